/**
 * The one error type cadenza throws. `code` lets callers branch without parsing messages;
 * the message names the file, the layer or field, and what was expected.
 */

export type CadenzaErrorCode =
  /** A model file or spec is malformed (bad JSON, unknown kind, bad value). */
  | "E_FORMAT"
  /** A tensor or width does not have the size the architecture needs. */
  | "E_SHAPE"
  /** A caller passed a bad argument (wrong length, bad option). */
  | "E_ARGUMENT"
  /** The native library reported a failure. */
  | "E_NATIVE"
  /** A model or engine was used after dispose(). */
  | "E_DISPOSED"
  /** Reading or writing a file failed. */
  | "E_IO"
  /** A size is beyond the limits shared with the native parser. */
  | "E_LIMIT"
  /** A program or file the feature needs is not installed (FluidSynth, a SoundFont). */
  | "E_UNAVAILABLE";

export class CadenzaError extends Error {
  readonly code: CadenzaErrorCode;

  constructor(code: CadenzaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CadenzaError";
    this.code = code;
  }
}
