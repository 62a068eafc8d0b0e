/**
 * The guitar-amp model JSON that NeuralPi, Proteus, AIDA-X and the Automated-GuitarAmpModelling
 * trainer write: `model_data` describes a recurrent unit (LSTM or GRU) and a linear head,
 * `state_dict` holds their PyTorch tensors (`rec.weight_ih_l0`, `rec.weight_hh_l0`,
 * `rec.bias_ih_l0`, `rec.bias_hh_l0`, ..., `lin.weight`, `lin.bias`) as nested lists. The
 * model's forward is `lin(rec(x)) + x[0..skip)`: with `skip` > 0 the first `skip` input values
 * (the dry sample; a second input is a conditioning knob) are added to the output, which
 * becomes a canonical `skip` layer.
 */

import { CadenzaError } from "../../errors.ts";
import { describe, type ModelSpec, validateSpec } from "../spec.ts";
import { parseTorchStateDict, type TorchLayerKind } from "./torch.ts";

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** True for JSON that has the amp format's two top-level objects (format detection). */
export function looksLikeAmpJson(json: unknown): boolean {
  return isRecord(json) && isRecord(json.model_data) && isRecord(json.state_dict);
}

const UNIT_TYPES: Record<string, TorchLayerKind> = { LSTM: "lstm", GRU: "gru" };

/** An optional non-negative integer field of model_data, checked. */
function intField(data: Json, field: string, source: string, min: number): number | undefined {
  const value = data[field];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: model_data.${field}: expected an integer >= ${min}, got ${describe(value)}`,
    );
  }
  return value;
}

/** Compares a declared size with the one the tensors give. */
function agree(source: string, field: string, declared: number | undefined, got: number): void {
  if (declared !== undefined && declared !== got) {
    throw new CadenzaError(
      "E_SHAPE",
      `${source}: model_data.${field}: the state_dict's tensors give ${got}, but it says ` +
        `${declared}`,
    );
  }
}

/** The recurrent unit's kind from model_data.unit_type (default LSTM, as the trainers). */
function unitKind(data: Json, source: string): TorchLayerKind {
  const unit = data.unit_type ?? "LSTM";
  const kind = typeof unit === "string" ? UNIT_TYPES[unit.toUpperCase()] : undefined;
  if (kind === undefined) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: model_data.unit_type: expected "LSTM" or "GRU", got ${describe(unit)}`,
    );
  }
  return kind;
}

/**
 * Converts a parsed amp-model JSON to a validated canonical spec: the recurrent layer(s), a
 * dense head, and a skip layer when `skip` > 0 (skip must equal output_size).
 *
 * @example
 * const spec = parseAmpJson(JSON.parse(text), "amp.json");
 */
export function parseAmpJson(json: unknown, source: string): ModelSpec {
  if (!looksLikeAmpJson(json)) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: expected an amp model JSON ({model_data, state_dict}), got ${describe(json)}`,
    );
  }
  const { model_data: data, state_dict: dict } = json as { model_data: Json; state_dict: Json };
  const kind = unitKind(data, source);
  const num_layers = intField(data, "num_layers", source, 1) ?? 1;
  const skip = intField(data, "skip", source, 0) ?? 0;
  const spec = parseTorchStateDict(dict, [
    { kind, name: "rec", numLayers: num_layers },
    { kind: "linear", name: "lin" },
  ], `${source}: state_dict`);
  const rec = spec.layers[0];
  const head = spec.layers[spec.layers.length - 1];
  agree(source, "input_size", intField(data, "input_size", source, 1), spec.inputSize);
  agree(source, "hidden_size", intField(data, "hidden_size", source, 1), rec.outputSize);
  agree(source, "output_size", intField(data, "output_size", source, 1), head.outputSize);
  if (data.bias_fl === false && head.bias !== false) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: model_data.bias_fl is false, but the state_dict holds lin.bias`,
    );
  }
  for (const layer of spec.layers) {
    if (layer.name === undefined) layer.name = layer.kind === "dense" ? "lin" : "rec";
  }
  if (skip > 0) {
    if (skip !== head.outputSize || skip > spec.inputSize) {
      throw new CadenzaError(
        "E_FORMAT",
        `${source}: model_data.skip: expected 0 or output_size (${head.outputSize}, at most ` +
          `input_size ${spec.inputSize}): the first skip inputs are added to the outputs, got ` +
          `${skip}`,
      );
    }
    spec.layers.push({
      kind: "skip",
      name: "skip",
      inputSize: skip,
      outputSize: skip,
      tensors: {},
    });
  }
  validateSpec(spec, source);
  return spec;
}
