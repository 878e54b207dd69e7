#!/usr/bin/env node
/**
 * `artist-id` command line. The one place that wires runtime (`src/`), training (`training/`) and
 * export (`export/`) together; training code is imported lazily so `classify` never loads
 * TensorFlow.js.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { classifyArchive, formatSummary } from '../archive/run.js';
import { expectInteger, expectNumber } from '../errors.js';
import { Classifier } from '../inference/classifier.js';
import { DEFAULT_MODEL_NAME, PACKAGE_VERSION } from '../paths.js';
import { registerServe } from './commands/serve.js';
import { registerBench } from './commands/bench.js';

/** Wraps a validator so commander reports its message as an invalid argument. */
function asArgument<T>(parse: (value: string) => T): (value: string) => T {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

/** commander argument parser for positive integers, with our error wording. */
function positiveInt(name: string) {
  return asArgument((value) => expectInteger(name, value, 1));
}

function parseSplit(value: string): [number, number, number] {
  const parts = value.split(',').map((v) => Number(v.trim()));
  if (parts.length !== 3 || parts.some((n) => !Number.isInteger(n) || n < 0) || parts[0] < 1 || parts[1] < 1) {
    throw new InvalidArgumentError(`Expected images per artist as train,validation,test with train >= 1, validation >= 1 and test >= 0 (e.g. 240,30,30) for --split but received ${JSON.stringify(value)}`);
  }
  return parts as [number, number, number];
}

function parseList(value: string): string[] {
  const items = value.split(',').map((v) => v.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError(`Expected comma-separated artist folder names for --artists but received ${JSON.stringify(value)}`);
  return items;
}

const providerOption = () => new Option('--provider <name>', 'execution provider').choices(['auto', 'cpu', 'cuda']).default('auto');

export function buildProgram(): Command {
  const program = new Command('artist-id')
    .description('Who painted it? Train artist classifiers on folders of paintings, export them to ONNX, classify archives.')
    .version(PACKAGE_VERSION)
    .showHelpAfterError();

  program
    .command('classify')
    .description('classify image files and folders (recursively); one row per attempted file')
    .argument('<inputs...>', 'image files or folders')
    .option('-m, --model <model>', 'model: .onnx file, folder with model.onnx, or name under models/', DEFAULT_MODEL_NAME)
    .option('-o, --out <file>', 'write rows to a .jsonl/.ndjson or .csv file (default: JSONL on stdout)')
    .option('-k, --top-k <k>', 'artists listed per row', positiveInt('--top-k'), 3)
    .option('-b, --batch-size <n>', 'images per inference batch', positiveInt('--batch-size'), 16)
    .option('--decode-concurrency <n>', 'images decoded at once (default: CPU cores)', positiveInt('--decode-concurrency'))
    .option('--resume', 'continue a killed run: keep rows already in --out (same model and --top-k), classify the rest')
    .option('--overwrite', 'replace an existing --out file (refused otherwise, unless --resume)')
    .addOption(providerOption())
    .option('--strict-provider', 'fail instead of falling back to CPU when CUDA is unavailable')
    .option('--no-progress', 'no progress line on stderr (shown by default when stderr is a terminal and rows do not go to it)')
    .addHelpText('after', `
Every row names the model that wrote it: model = <card name>@<first 12 hex of the sha256 of the model file>.

Exit status:
  0    at least one file was classified, or none failed (failures are in the rows' error)
  1    no image was found in the inputs, every attempted file failed, or an error stopped the run
  130  interrupted by SIGINT (143: SIGTERM); the rows written are complete: rerun with --resume`)
    .action(async (inputs: string[], opts) => {
      const classifier = await Classifier.load(opts.model, { provider: opts.provider, strictProvider: opts.strictProvider });
      process.stderr.write(`model: ${classifier.card.name} (${classifier.card.classes.length} artists) from ${classifier.path}\nexecution provider: ${classifier.provider}${classifier.fallbackReason ? ` (${classifier.fallbackReason})` : ''}\n`);
      // Ctrl-C or a scheduler's SIGTERM ends the run on a complete row, so --resume can continue it.
      // `once`: a second signal gets Node's default and ends the process at once.
      const stop = new AbortController();
      let received: NodeJS.Signals | undefined;
      const onSignal = (signal: NodeJS.Signals): void => {
        received = signal;
        stop.abort();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const summary = await classifyArchive({
          inputs,
          classifier,
          out: opts.out,
          overwrite: opts.overwrite,
          topK: opts.topK,
          batchSize: opts.batchSize,
          decodeConcurrency: opts.decodeConcurrency,
          resume: opts.resume,
          progress: opts.progress === false ? false : undefined,
          signal: stop.signal,
        });
        process.stderr.write(`${formatSummary(summary)}\n`);
        // 128 + signal number, as shells report a process killed by that signal.
        process.exitCode = summary.interrupted ? (received === 'SIGTERM' ? 143 : 130) : summary.exitCode;
      } finally {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
        await classifier.dispose();
      }
    });

  program
    .command('train')
    .description('train an artist classifier (frozen ImageNet base + dense head) and export it to ONNX')
    .requiredOption('-d, --data <dir>', 'paintings: <dir>/<artist>/*.jpg or Keras layout <dir>/{train,validation,test}/<artist>/')
    .requiredOption('-o, --out <dir>', 'output folder (model.onnx, MODEL_CARD.md, history.json)')
    .option('--artists <list>', 'comma-separated artist folders to use (default: all)', parseList)
    .option('--split <t,v,t>', 'images per artist for train,validation,test (flat layout)', parseSplit, [240, 30, 30])
    .option('--seed <n>', 'seed of the split, initialisation and batch order', positiveInt('--seed'), 42)
    .addOption(new Option('--method <method>', 'training method').choices(['features']).default('features'))
    .addOption(new Option('--features <kind>', 'bottleneck features: style statistics (mean/std/Gram of several maps) or the pooled final map').choices(['style', 'pooled']).default('style'))
    .option('--epochs <n>', 'maximum epochs (default 80; stops after 20 without a better validation score)', positiveInt('--epochs'))
    .option('--hidden <n>', 'hidden units of the dense head, 0 for logistic regression (default: 0 for style, 64 for pooled)', asArgument((v) => expectInteger('--hidden', v, 0, 4096)))
    .option('--dropout <rate>', 'dropout rate in [0,1) (default: 0.2 for style, 0.5 for pooled)', asArgument((v) => expectNumber('--dropout', v, 0, 0.99)))
    .option('--l2 <lambda>', 'L2 penalty on Dense kernels; default 1e-3', asArgument((v) => expectNumber('--l2', v, 0, 10)))
    .option('--weights-dir <dir>', 'folder with pretrained base weights (else $ARTIST_ID_WEIGHTS_DIR, cache, download)')
    .option('--name <name>', 'model name recorded in the card (default: the output folder name)')
    .option('--overwrite', 'replace a model already in --out')
    .action(async (opts) => {
      const { train } = await import('../../training/train.js');
      await train({
        data: opts.data,
        out: opts.out,
        artists: opts.artists,
        split: opts.split,
        seed: opts.seed,
        name: opts.name,
        weightsDir: opts.weightsDir,
        features: opts.features,
        overwrite: opts.overwrite,
        head: Object.fromEntries(Object.entries({ epochs: opts.epochs, hidden: opts.hidden, dropout: opts.dropout, l2: opts.l2 }).filter(([, v]) => v !== undefined)),
      });
    });

  program
    .command('evaluate')
    .description("rebuild a model's held-out test split from its card and report accuracy, per-artist precision/recall, confusion matrix, misclassified files")
    .option('-m, --model <model>', 'model: .onnx file, folder with model.onnx, or name under models/', DEFAULT_MODEL_NAME)
    .requiredOption('-d, --data <dir>', 'the dataset the model was trained on')
    .option('--json <file>', 'also write the report as JSON')
    .option('--allow-split-mismatch', 'evaluate even if --data no longer reproduces the training split (the figure is then not held out)')
    .addOption(providerOption())
    .action(async (opts) => {
      const { evaluate, formatEvaluation } = await import('../../training/evaluate.js');
      const result = await evaluate({ model: opts.model, data: opts.data, provider: opts.provider, json: opts.json, allowSplitMismatch: opts.allowSplitMismatch });
      process.stdout.write(`${formatEvaluation(result)}\n`);
    });

  registerServe(program);
  registerBench(program);

  return program;
}

/** Runs the CLI; prints errors as one line for people (stack traces only with DEBUG=artist-id). */
export async function main(argv: string[] = process.argv): Promise<void> {
  // Output piped into `head` closes stdout early: stop quietly like other Unix tools.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    process.stderr.write(`artist-id: ${(err as Error).message}\n`);
    if (process.env.DEBUG?.includes('artist-id')) process.stderr.write(`${(err as Error).stack}\n`);
    process.exitCode = 1;
  }
}

await main();
