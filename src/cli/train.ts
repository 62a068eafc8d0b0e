/**
 * `cadenza train`, `cadenza finetune`, `cadenza distill` and `cadenza quantize --qat`: the
 * training engine (src/train) on a data file (docs/TRAINING.md). They share one run: read the
 * model (weights, or an architecture initialised from --seed), read and check the data against
 * it, split off the held-out part, train with a progress line on stderr, evaluate the held-out
 * part after every epoch, checkpoint every N steps and at each epoch's end (`--resume`
 * continues from the checkpoint), and write the trained model as an ordinary .safetensors
 * file.
 */

import { existsSync } from "node:fs";
import { CadenzaError } from "../errors.ts";
import { loadModel, loadSpec, modelFromSpec } from "../model/load.ts";
import { type LayerArch, type ModelSpec, parameterCount } from "../model/spec.ts";
import { readText } from "../native/io.ts";
import { EMOTION_MODELS } from "../pipeline/emotion.ts";
import { checkWritable } from "../train/atomic.ts";
import { readCheckpoint } from "../train/checkpoint.ts";
import { writeFileAtomicSync } from "../atomic.ts";
import { writeSafetensorsInt8 } from "../model/formats/safetensors.ts";
import { int8WeightBytes, quantiseSpec } from "../model/quantised.ts";
import {
  checkDataForModel,
  LOSSES,
  type LossName,
  readTrainingData,
  splitData,
  type TrainingData,
} from "../train/data.ts";
import { logitsSpec, scoreModel, teacherLogits } from "../train/evaluate.ts";
import { fit } from "../train/loop.ts";
import { initSpec } from "../train/params.ts";
import { Progress } from "../train/progress.ts";
import { type Metrics, Trainer, type TrainerOptions } from "../train/trainer.ts";
import { expectPositionals, type ParsedArgs, UsageError } from "./args.ts";
import { type Command, consoleOutput, type Output } from "./command.ts";

type Mode = "train" | "finetune" | "distill" | "quantize";

const COMMON_VALUES = {
  data: "FILE",
  eval: "FILE",
  holdout: "F",
  epochs: "N",
  batch: "N",
  "seq-len": "N",
  lr: "X",
  optimizer: "adamw|sgd",
  loss: "xent|bce|mse|kl",
  "weight-decay": "X",
  "clip-norm": "X",
  warmup: "N",
  "label-smoothing": "X",
  seed: "N",
  out: "FILE",
  checkpoint: "FILE",
  "checkpoint-every": "N",
  "max-steps": "N",
  bptt: "N",
  threads: "1|2",
  library: "safe|fast|PATH",
};

const COMMON_HELP = [
  "  --data FILE            training data (.safetensors: inputs, targets, lengths, split;",
  "                         docs/TRAINING.md)",
  "  --eval FILE            held-out data (default: the data's split, else --holdout of it)",
  "  --holdout F            fraction held out when there is neither split nor --eval (0.1)",
  "  --epochs N             passes over the training part (MODE_EPOCHS)",
  "  --batch N              sequences per step (32)",
  "  --seq-len N            steps per sequence (default: the data's T)",
  "  --lr X                 peak learning rate (MODE_LR); cosine decay to 0 over the run",
  "  --warmup N             linear warm-up steps (0)",
  "  --optimizer O          adamw (default) or sgd",
  "  --loss L               xent, bce, mse or kl (default: the data's metadata, else xent for",
  "                         class ids and mse for values)",
  "  --weight-decay X       on the weight matrices (0.01 with adamw)",
  "  --clip-norm X          clip the gradient's global norm (default 1; 0 turns it off)",
  "  --label-smoothing X    xent with class ids (0)",
  "  --bptt N               truncated backpropagation through time, N steps (0: whole sequence)",
  "  --seed N               data order, held-out choice and initial weights (1)",
  "  --checkpoint FILE      where checkpoints go (default: OUT.ckpt.safetensors)",
  "  --checkpoint-every N   also checkpoint every N steps (default: at each epoch's end only)",
  "  --resume               continue from the checkpoint (same data and flags)",
  "  --keep-zeros           weight-matrix entries that are 0 stay 0 (fine-tuning a pruned model)",
  "  --max-steps N          stop after N steps of this invocation, checkpointed (resume later)",
  "  --json                 print the summary as JSON",
  "  --threads N            1 (default) or 2: a helper thread for large products (same",
  "                         results; pays only when a second core is idle)",
  "  --library L            safe (default), fast, or a library path (else CADENZA_LIB)",
].join("\n");

function numberFlag(
  args: ParsedArgs,
  name: string,
  fallback: number,
  ok: (v: number) => boolean,
  expected: string,
  command: string,
): number {
  const text = args.values.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || !ok(value)) {
    throw new UsageError(`${command}: --${name} must be ${expected}, got "${text}"`);
  }
  return value;
}

const positiveInt = (v: number) => Number.isInteger(v) && v >= 1;
const nonNegativeInt = (v: number) => Number.isInteger(v) && v >= 0;

/** An architecture JSON: { inputSize, layers: [{ kind, inputSize, outputSize, ... }] }. */
function isArchitecture(json: unknown): json is { inputSize: number; layers: LayerArch[] } {
  const j = json as { inputSize?: unknown; layers?: unknown } | null;
  return typeof j === "object" && j !== null && typeof j.inputSize === "number" &&
    Array.isArray(j.layers) &&
    j.layers.every((l) => typeof l === "object" && l !== null && "kind" in l && !("tensors" in l));
}

/**
 * The starting model: a pipeline model's name (its architecture), an architecture JSON
 * (initialised from `seed`), or a model file (its weights).
 */
export async function startingSpec(
  value: string,
  seed: number,
): Promise<{ spec: ModelSpec; initialised: boolean }> {
  const named = EMOTION_MODELS.find((m) => m.name === value);
  if (named !== undefined) {
    return {
      spec: initSpec(
        { inputSize: named.inputSize, layers: named.layers.map((l) => ({ ...l })) },
        seed,
      ),
      initialised: true,
    };
  }
  if (value.endsWith(".json")) {
    let json: unknown;
    try {
      json = JSON.parse(await readText(value));
    } catch (err) {
      if (err instanceof CadenzaError) throw err;
      throw new CadenzaError("E_FORMAT", `${value}: expected JSON: ${(err as Error).message}`);
    }
    if (isArchitecture(json)) {
      const spec = initSpec(json, seed);
      return { spec, initialised: true };
    }
  }
  return { spec: (await loadSpec(value)).spec, initialised: false };
}

function lossFor(args: ParsedArgs, data: TrainingData, mode: Mode, command: string): LossName {
  const flag = args.values.get("loss");
  if (flag !== undefined && !(LOSSES as readonly string[]).includes(flag)) {
    throw new UsageError(`${command}: --loss must be one of ${LOSSES.join(", ")}, got "${flag}"`);
  }
  if (mode === "distill") return "kl";
  const chosen = flag ?? data.meta.loss ?? (data.targetKind === "classes" ? "xent" : "mse");
  return chosen as LossName;
}

interface Parts {
  train: TrainingData;
  heldOut: TrainingData;
}

async function dataParts(args: ParsedArgs, seed: number, command: string): Promise<Parts> {
  const path = args.values.get("data");
  if (path === undefined) throw new UsageError(`${command}: --data FILE is required`);
  const data = await readTrainingData(path);
  const evalPath = args.values.get("eval");
  if (evalPath !== undefined) {
    // The file's own held-out sequences are not trained on either.
    const train = data.split?.includes(1) ? splitData(data, 0.1, seed).train : data;
    return { train, heldOut: await readTrainingData(evalPath) };
  }
  const holdout = numberFlag(
    args,
    "holdout",
    0.1,
    (v) => v > 0 && v < 1,
    "a fraction in (0, 1)",
    command,
  );
  return splitData(data, holdout, seed);
}

function metricsText(m: Metrics | null, loss: LossName): string {
  if (m === null) return "no held-out data";
  const what = loss === "mse" ? "mean abs error" : "accuracy";
  return `held-out loss ${m.loss.toFixed(4)}, ${what} ${m.accuracy.toFixed(4)}`;
}

interface RunPlan {
  mode: Mode;
  command: string;
  spec: ModelSpec;
  out: string;
  loss: LossName;
  parts: Parts;
  defaults: { epochs: number; lr: number };
  extra?: Partial<TrainerOptions>;
  meta: Record<string, string>;
}

/** The shared run; returns the trainer (still live) and the last epoch's held-out metrics. */
async function runTraining(plan: RunPlan, args: ParsedArgs, output: Output) {
  const { command, parts } = plan;
  const seed = numberFlag(args, "seed", 1, nonNegativeInt, "a non-negative integer", command);
  const epochs = numberFlag(
    args,
    "epochs",
    plan.defaults.epochs,
    positiveInt,
    "a positive integer",
    command,
  );
  const batch = numberFlag(
    args,
    "batch",
    32,
    (v) => positiveInt(v) && v <= 4096,
    "an integer in 1..4096",
    command,
  );
  const seqLen = numberFlag(
    args,
    "seq-len",
    parts.train.steps,
    positiveInt,
    "a positive integer",
    command,
  );
  const model = {
    inputSize: plan.spec.inputSize,
    outputSize: plan.spec.layers[plan.spec.layers.length - 1].outputSize,
    source: args.values.get("model") ?? plan.out,
  };
  checkDataForModel(parts.train, model, plan.loss);
  checkDataForModel(parts.heldOut, model, plan.loss);
  const library = args.values.get("library");
  const checkpoint = args.values.get("checkpoint") ?? `${plan.out}.ckpt.safetensors`;
  const every = numberFlag(
    args,
    "checkpoint-every",
    0,
    nonNegativeInt,
    "a non-negative integer",
    command,
  );
  const batches = Math.floor(parts.train.count / batch);
  if (batches < 1) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `${parts.train.source}: ${parts.train.count} training sequences make no batch of ${batch} ` +
        "(pass a smaller --batch)",
    );
  }
  const optimizer = args.values.get("optimizer") ?? "adamw";
  if (optimizer !== "adamw" && optimizer !== "sgd") {
    throw new UsageError(`${command}: --optimizer must be adamw or sgd, got "${optimizer}"`);
  }
  const options: TrainerOptions = {
    optimizer,
    lr: numberFlag(args, "lr", plan.defaults.lr, (v) => v > 0, "a number > 0", command),
    warmupSteps: numberFlag(args, "warmup", 0, nonNegativeInt, "a non-negative integer", command),
    totalSteps: epochs * batches,
    batch,
    seqLen,
    loss: plan.loss,
    clipNorm: numberFlag(args, "clip-norm", 1, (v) => v >= 0, "a number >= 0", command),
    threads: numberFlag(args, "threads", 1, (v) => v === 1 || v === 2, "1 or 2", command) as
      | 1
      | 2,
    bpttWindow: numberFlag(args, "bptt", 0, nonNegativeInt, "a non-negative integer", command),
    labelSmoothing: numberFlag(
      args,
      "label-smoothing",
      0,
      (v) => v >= 0 && v < 1,
      "a number in [0, 1)",
      command,
    ),
    library,
    ...plan.extra,
  };
  const wd = args.values.get("weight-decay");
  if (wd !== undefined) {
    options.weightDecay = numberFlag(
      args,
      "weight-decay",
      0,
      (v) => v >= 0,
      "a number >= 0",
      command,
    );
  }
  checkWritable(plan.out);
  checkWritable(checkpoint);
  let trainer: Trainer;
  let from = { epoch: 0, batch: 0 };
  if (args.switches.has("resume")) {
    if (!existsSync(checkpoint)) {
      throw new CadenzaError("E_IO", `${command}: --resume: no checkpoint at ${checkpoint}`);
    }
    const saved = await readCheckpoint(checkpoint);
    const p = saved.progress as { epoch?: number; batch?: number; seed?: number };
    if (p.seed !== seed) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `${checkpoint}: the run used --seed ${p.seed}, this one ${seed}: resume with the same flags`,
      );
    }
    const resumed = await Trainer.resume(checkpoint, { library });
    trainer = resumed.trainer;
    from = { epoch: p.epoch ?? 0, batch: p.batch ?? 0 };
    output.err(
      `${command}: resuming ${checkpoint} at epoch ${
        from.epoch + 1
      }, batch ${from.batch}, step ${trainer.stepCount}`,
    );
  } else {
    trainer = await Trainer.create(plan.spec, options, model.source);
    if (args.switches.has("keep-zeros")) {
      const held = trainer.holdZeros();
      output.err(`${command}: holding ${held} weight-matrix entries that are 0 (--keep-zeros)`);
    }
  }
  // On the console the progress line goes to stderr itself (redrawn on a terminal); any
  // other Output (tests, embedding) gets plain lines through its err().
  const direct = output === consoleOutput;
  const progress = new Progress({
    totalSteps: epochs * batches,
    label: command,
    tty: direct ? undefined : false,
    write: direct ? undefined : (text) => output.err(text.replace(/\n$/, "")),
  });
  let last: Metrics | null = null;
  try {
    const maxSteps = args.values.has("max-steps")
      ? numberFlag(args, "max-steps", 0, positiveInt, "a positive integer", command)
      : undefined;
    const result = await fit(trainer, parts.train, parts.heldOut, {
      epochs,
      seed,
      from,
      stopAfter: maxSteps,
      checkpoint: { path: checkpoint, every },
      progress,
      onEpoch: (epoch, metrics, trainLoss) => {
        last = metrics;
        progress.note(
          `${command}: epoch ${epoch}/${epochs}: train loss ${trainLoss.toFixed(4)}, ${
            metricsText(metrics, plan.loss)
          }`,
        );
      },
    });
    if (result.stopped) {
      output.err(
        `${command}: stopped after ${result.steps} steps (step ${trainer.stepCount}); ` +
          `${checkpoint} holds the run: continue it with the same flags and --resume`,
      );
      return { trainer, metrics: null, options, stopped: true };
    }
    await trainer.export(plan.out, {
      ...plan.meta,
      trained_by: `cadenza ${command}`,
      loss: plan.loss,
      epochs: String(epochs),
      steps: String(trainer.stepCount),
    });
  } catch (err) {
    trainer.dispose();
    throw err;
  }
  return { trainer, metrics: last as Metrics | null, options, stopped: false };
}

function summary(
  args: ParsedArgs,
  output: Output,
  fields: Record<string, unknown>,
  text: string,
): void {
  if (args.switches.has("json")) output.out(JSON.stringify(fields));
  else output.out(text);
}

async function train(args: ParsedArgs, output: Output): Promise<number> {
  expectPositionals(args, [], "train");
  const modelArg = args.values.get("model");
  if (modelArg === undefined) throw new UsageError("train: --model SPEC-OR-WEIGHTS is required");
  const out = args.values.get("out");
  if (out === undefined) throw new UsageError("train: --out FILE is required");
  const seed = numberFlag(args, "seed", 1, nonNegativeInt, "a non-negative integer", "train");
  const { spec } = await startingSpec(modelArg, seed);
  const parts = await dataParts(args, seed, "train");
  const loss = lossFor(args, parts.train, "train", "train");
  const { trainer, metrics, stopped } = await runTraining(
    {
      mode: "train",
      command: "train",
      spec,
      out,
      loss,
      parts,
      defaults: { epochs: 10, lr: 1e-3 },
      meta: { data: args.values.get("data")! },
    },
    args,
    output,
  );
  if (stopped) {
    trainer.dispose();
    return 0;
  }
  const steps = trainer.stepCount;
  trainer.dispose();
  summary(
    args,
    output,
    { out, parameters: parameterCount(spec), steps, loss, heldOut: metrics },
    `train: ${out}: ${parameterCount(spec)} parameters, ${steps} steps, ${
      metricsText(metrics, loss)
    }`,
  );
  return 0;
}

async function finetune(args: ParsedArgs, output: Output): Promise<number> {
  const [input] = expectPositionals(args, ["model"], "finetune");
  const out = args.values.get("out") ??
    input.replace(/(\.safetensors)?$/, "-finetuned.safetensors");
  const seed = numberFlag(args, "seed", 1, nonNegativeInt, "a non-negative integer", "finetune");
  const { spec } = await loadSpec(input);
  const parts = await dataParts(args, seed, "finetune");
  const loss = lossFor(args, parts.train, "finetune", "finetune");
  args.values.set("model", input);
  const { trainer, metrics, stopped } = await runTraining(
    {
      mode: "finetune",
      command: "finetune",
      spec,
      out,
      loss,
      parts,
      defaults: { epochs: 3, lr: 1e-4 },
      meta: { finetuned_from: input, data: args.values.get("data")! },
    },
    args,
    output,
  );
  if (stopped) {
    trainer.dispose();
    return 0;
  }
  const steps = trainer.stepCount;
  trainer.dispose();
  summary(
    args,
    output,
    { out, steps, loss, heldOut: metrics },
    `finetune: ${input} -> ${out}: ${steps} steps, ${metricsText(metrics, loss)}`,
  );
  return 0;
}

async function distill(args: ParsedArgs, output: Output): Promise<number> {
  expectPositionals(args, [], "distill");
  const teacherPath = args.values.get("teacher");
  const studentArg = args.values.get("student");
  const out = args.values.get("out");
  if (teacherPath === undefined || studentArg === undefined || out === undefined) {
    throw new UsageError(
      "distill: --teacher FILE, --student SPEC-OR-WEIGHTS and --out FILE are required",
    );
  }
  const seed = numberFlag(args, "seed", 1, nonNegativeInt, "a non-negative integer", "distill");
  const temperature = numberFlag(args, "temperature", 2, (v) => v > 0, "a number > 0", "distill");
  const library = args.values.get("library");
  const teacher = await loadModel(teacherPath, { library });
  const { spec } = await startingSpec(studentArg, seed);
  const parts = await dataParts(args, seed, "distill");
  const original = parts.train.targetKind === "classes"
    ? "xent"
    : (parts.train.meta.loss as LossName | undefined) ?? "mse";
  checkDataForModel(parts.train, teacher, original);
  const logits = logitsSpec(teacher.spec);
  // A teacher without a final softmax or sigmoid (a regression, e.g. the EmotionRecognizer's
  // tanh embedding) has no distribution to soften: the student matches its outputs (mse).
  const matchOutputs = logits.removed === null && args.values.get("loss") !== "kl";
  const logitTeacher = await modelFromSpec(logits.spec, {
    library,
    source: teacherPath,
  });
  const soft = {
    train: teacherLogits(logitTeacher, parts.train),
    heldOut: teacherLogits(logitTeacher, parts.heldOut),
  };
  logitTeacher.dispose();
  args.values.set("model", studentArg);
  const { trainer, metrics, stopped } = await runTraining(
    {
      mode: "distill",
      command: "distill",
      spec,
      out,
      loss: matchOutputs ? "mse" : "kl",
      parts: matchOutputs
        ? {
          train: { ...soft.train, meta: { ...soft.train.meta, loss: "mse" } },
          heldOut: { ...soft.heldOut, meta: { ...soft.heldOut.meta, loss: "mse" } },
        }
        : soft,
      defaults: { epochs: 10, lr: 1e-3 },
      extra: matchOutputs ? {} : { temperature },
      meta: matchOutputs
        ? { distilled_from: teacherPath, distill_loss: "mse" }
        : { distilled_from: teacherPath, temperature: String(temperature) },
    },
    args,
    output,
  );
  if (stopped) {
    trainer.dispose();
    return 0;
  }
  trainer.dispose();
  const student = await loadModel(out, { library });
  const teacherScore = scoreModel(teacher, parts.heldOut, original);
  const studentScore = scoreModel(student, parts.heldOut, original);
  const ratio = studentScore.accuracy / teacherScore.accuracy;
  const params = [student.parameterCount, teacher.parameterCount];
  student.dispose();
  teacher.dispose();
  const what = original === "mse" ? "mean abs error" : "accuracy";
  summary(
    args,
    output,
    {
      out,
      studentParameters: params[0],
      teacherParameters: params[1],
      teacher: teacherScore,
      student: studentScore,
      kl: metrics,
    },
    `distill: ${out}: ${params[0]} parameters (teacher ${params[1]}, ${
      (params[0] / params[1]).toFixed(3)
    }x); held-out ${what} ${studentScore.accuracy.toFixed(4)} vs teacher ${
      teacherScore.accuracy.toFixed(4)
    } (${(ratio * 100).toFixed(1)}%)`,
  );
  return 0;
}

/** Rewrites the f32 model file `path` as an int8 file (the library's scheme), atomically. */
async function storeInt8(path: string): Promise<void> {
  const { spec } = await loadSpec(path);
  writeFileAtomicSync(path, writeSafetensorsInt8(quantiseSpec(spec)));
}

/** `quantize M OUT` without --qat: post-training int8, no data. */
async function quantizePostTraining(
  args: ParsedArgs,
  output: Output,
  input: string,
  out: string,
): Promise<number> {
  for (const flag of ["data", "eval", "epochs"]) {
    if (args.values.has(flag)) {
      throw new UsageError(
        `quantize: --${flag} is for --qat (training); without it no data is read`,
      );
    }
  }
  checkWritable(out);
  const { spec } = await loadSpec(input);
  const int8 = quantiseSpec({
    ...spec,
    meta: { ...(spec.meta ?? {}), quantized_from: input, quantized_by: "cadenza quantize" },
  });
  const bytes = writeSafetensorsInt8(int8);
  writeFileAtomicSync(out, bytes);
  summary(
    args,
    output,
    { out, weightBytes: int8WeightBytes(int8), fileBytes: bytes.length },
    `quantize: ${out}: int8 (post-training, ${int8WeightBytes(int8)} weight bytes; ` +
      `loads as int8)`,
  );
  return 0;
}

async function quantize(args: ParsedArgs, output: Output): Promise<number> {
  const [input, out] = expectPositionals(args, ["model", "out"], "quantize");
  if (!args.switches.has("qat")) return await quantizePostTraining(args, output, input, out);
  const seed = numberFlag(args, "seed", 1, nonNegativeInt, "a non-negative integer", "quantize");
  const library = args.values.get("library");
  const { spec } = await loadSpec(input);
  const parts = await dataParts(args, seed, "quantize");
  const loss = lossFor(args, parts.train, "quantize", "quantize");
  args.values.set("model", input);
  args.values.set("out", out);
  const { trainer, stopped } = await runTraining(
    {
      mode: "quantize",
      command: "quantize",
      spec,
      out,
      loss,
      parts,
      defaults: { epochs: 3, lr: 1e-4 },
      extra: { qat: true },
      meta: { quantized_from: input, qat: "int8", precision: "int8" },
    },
    args,
    output,
  );
  if (stopped) {
    trainer.dispose();
    return 0;
  }
  trainer.dispose();
  await storeInt8(out);
  const ptq = await loadModel(input, { library, precision: "int8" });
  const qat = await loadModel(out, { library });
  const before = scoreModel(ptq, parts.heldOut, loss);
  const after = scoreModel(qat, parts.heldOut, loss);
  ptq.dispose();
  qat.dispose();
  const what = loss === "mse" ? "mean abs error" : "accuracy";
  summary(
    args,
    output,
    { out, postTraining: before, qat: after },
    `quantize: ${out} (int8 file): held-out through the int8 path: QAT loss ${
      after.loss.toFixed(4)
    }, ${what} ${after.accuracy.toFixed(4)}; post-training int8 of ${input}: loss ${
      before.loss.toFixed(4)
    }, ${what} ${before.accuracy.toFixed(4)}`,
  );
  return 0;
}

const TRAIN_FLAGS = {
  values: { ...COMMON_VALUES, model: "SPEC-OR-WEIGHTS" },
  switches: ["resume", "json", "keep-zeros"],
};

function helpFor(usage: string, body: string[], epochs: string, lr: string): string {
  return [
    usage,
    "",
    ...body,
    "",
    "flags:",
    COMMON_HELP.replace("MODE_EPOCHS", epochs).replace("MODE_LR", lr),
  ].join("\n");
}

export const trainCommand: Command = {
  name: "train",
  summary: "train a model on a data file (docs/TRAINING.md)",
  help: helpFor(
    "usage: cadenza train --model SPEC-OR-WEIGHTS --data FILE [--epochs N] --out M.safetensors",
    [
      "Trains a model in the native training engine and writes it as an ordinary .safetensors",
      "model. --model is a model file (its weights are the start), an architecture JSON",
      '({"inputSize": 8, "layers": [{"kind": "lstm", "inputSize": 8, "outputSize": 32}, ...]},',
      "initialised from --seed), or a pipeline model's name (e.g. MelodyTransformer). A progress",
      "line on stderr shows epoch, step, loss, examples/s and ETA; after each epoch the held-out",
      "loss and accuracy; a checkpoint is written at each epoch's end (and every",
      "--checkpoint-every steps), and --resume continues a stopped run from it, bit for bit.",
      "Data whose shapes do not fit the model is refused naming the tensor and both shapes.",
    ],
    "10",
    "1e-3",
  ),
  flags: TRAIN_FLAGS,
  run: train,
};

export const finetuneCommand: Command = {
  name: "finetune",
  summary: "continue training a model file on new data (e.g. after pruning)",
  help: helpFor(
    "usage: cadenza finetune M.safetensors --data FILE [--out FILE] [--epochs N]",
    [
      "Trains M's weights further on --data (a lower learning rate than train by default) and",
      "writes OUT (default: M-finetuned.safetensors). Otherwise as `cadenza train`.",
    ],
    "3",
    "1e-4",
  ),
  flags: { values: { ...COMMON_VALUES }, switches: ["resume", "json", "keep-zeros"] },
  run: finetune,
};

export const distillCommand: Command = {
  name: "distill",
  summary: "train a smaller student on a teacher's soft outputs",
  help: helpFor(
    "usage: cadenza distill --teacher T.safetensors --student SPEC-OR-WEIGHTS --data FILE --out S.safetensors",
    [
      "Runs the teacher over --data and trains the student to match its outputs: loss kl",
      "between the two softmaxes at --temperature (default 2), times T^2; a teacher that ends",
      "in neither softmax nor sigmoid (a regression) is matched by mse on its outputs. The student is a",
      "model file, an architecture JSON or a pipeline model's name, as for `train`. At the end",
      "both run the held-out part through ordinary inference and the summary gives each one's",
      "accuracy on the data's own targets and the student's share of the teacher's.",
      "",
      "  --teacher FILE         the teacher model",
      "  --student S            the student (file, architecture JSON or name)",
      "  --temperature X        softening of both distributions (2)",
    ],
    "10",
    "1e-3",
  ),
  flags: {
    values: { ...COMMON_VALUES, teacher: "FILE", student: "SPEC-OR-WEIGHTS", temperature: "X" },
    switches: ["resume", "json", "keep-zeros"],
  },
  run: distill,
};

export const quantizeCommand: Command = {
  name: "quantize",
  summary: "int8 model files: post-training, or quantisation-aware training (--qat)",
  help: helpFor(
    "usage: cadenza quantize M.safetensors OUT.safetensors [--qat --data FILE [--epochs N]]",
    [
      "Writes OUT as an int8 file: I8 weight matrices and one f32 scale per row (the library's",
      "scheme, __metadata__.quantization), which loads as int8 with no f32 copy. Without --qat",
      "the weights of M are quantised as they are (post-training). With --qat M is first",
      "fine-tuned with its forward running the int8 inference arithmetic (per-row int8 weights,",
      "per-call int8 inputs; gradients straight through); the summary scores OUT and M, both",
      "through the int8 inference path, on the held-out part.",
      "",
      "  --qat                  quantisation-aware training on --data before quantising",
    ],
    "3",
    "1e-4",
  ),
  flags: { values: { ...COMMON_VALUES }, switches: ["resume", "json", "qat", "keep-zeros"] },
  run: quantize,
};
