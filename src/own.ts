/**
 * Records keyed by names that come from files and callers (output names, model keys, metadata
 * keys). Plain assignment of the key "__proto__" would replace the record's prototype instead
 * of adding an entry; these helpers always make an own, enumerable entry.
 */

/** Sets `record[key] = value` as an own, enumerable, writable property, whatever `key` is. */
export function setOwn<T>(record: Record<string, T>, key: string, value: T): void {
  const property = { value, enumerable: true, writable: true, configurable: true };
  Object.defineProperty(record, key, property);
}
