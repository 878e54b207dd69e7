#!/usr/bin/env node
/**
 * `artist-id` command line. The one place that wires runtime (`src/`), training (`training/`) and
 * export (`export/`) together; training code is imported lazily so `classify` never loads
 * TensorFlow.js.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { classifyArchive, formatSummary } from '../archive/run.js';
import { checkInputs } from '../archive/walk.js';
import { expectInteger, expectNumber } from '../errors.js';
import { Classifier } from '../inference/classifier.js';
import { HEAD_SOLVERS, TTA_CHOICES } from '../model/card.js';
import { DEFAULT_MODEL_NAME, PACKAGE_VERSION } from '../paths.js';
import { registerServe } from './commands/serve.js';
import { registerBench } from './commands/bench.js';

/** Training methods; kept in step with TRAIN_METHODS in training/train.ts (src/ imports no training code: it is loaded lazily). */
const TRAIN_METHODS = ['baseline', 'features', 'finetune', 'ensemble'] as const;
type TrainMethod = (typeof TRAIN_METHODS)[number];
/** `--lr-schedule` choices; kept in step with LR_SCHEDULES in training/schedules.ts. */
const LR_SCHEDULE_NAMES = ['constant', 'step', 'cosine', 'plateau'] as const;
/** Default `--input-size` of the baseline; kept in step with BASELINE_DEFAULT_INPUT_SIZE in training/train-baseline.ts. */
const BASELINE_DEFAULT_INPUT_SIZE = 64;

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

function parseMembers(value: string): string[] {
  const items = value.split(',').map((v) => v.trim()).filter(Boolean);
  if (items.length < 2) throw new InvalidArgumentError(`Expected at least 2 comma-separated model folders or .onnx files for --members but received ${JSON.stringify(value)}`);
  return items;
}

/** The object without its undefined entries (so a method's own defaults apply). */
function defined<T extends Record<string, unknown>>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * `train` options that only some methods read; any option not listed applies to every method that trains
 * (all but ensemble), and `--out`, `--name`, `--overwrite`, `--method` to all.
 */
const TRAIN_FLAG_METHODS: Record<string, readonly TrainMethod[]> = {
  '--data': ['baseline', 'features', 'finetune', 'ensemble'],
  '--out': ['baseline', 'features', 'finetune', 'ensemble'],
  '--name': ['baseline', 'features', 'finetune', 'ensemble'],
  '--overwrite': ['baseline', 'features', 'finetune', 'ensemble'],
  '--method': ['baseline', 'features', 'finetune', 'ensemble'],
  '--input-size': ['baseline'],
  '--no-augment': ['baseline'],
  '--features': ['features', 'finetune'],
  '--base': ['features'],
  '--hidden': ['features'],
  '--batch-norm': ['features'],
  '--lr-schedule': ['features'],
  '--label-smoothing': ['features'],
  '--mixup': ['features'],
  '--tta': ['features'],
  '--solver': ['features'],
  '--l2': ['features', 'finetune'],
  '--weights-dir': ['features', 'finetune'],
  '--views': ['finetune'],
  '--train-blocks': ['finetune'],
  '--optimizer': ['finetune'],
  '--max-seconds': ['finetune'],
  '--members': ['ensemble'],
};
const TRAINING_METHODS: readonly TrainMethod[] = ['baseline', 'features', 'finetune'];

/**
 * Refuses options given on the command line that the chosen method does not read.
 *
 * @throws Error naming the option, the method and the methods it applies to.
 */
function checkTrainFlags(command: Command, method: TrainMethod): void {
  for (const option of command.options) {
    const key = option.attributeName();
    if (command.getOptionValueSource(key) !== 'cli') continue;
    const flag = option.long ?? option.flags;
    const applies = TRAIN_FLAG_METHODS[flag] ?? TRAINING_METHODS;
    if (!applies.includes(method)) {
      throw new Error(`${flag} does not apply to --method ${method}; it applies to: ${applies.join(', ')}${method === 'ensemble' ? ' (an ensemble trains nothing: its members carry their data, split and seed)' : ''}`);
    }
  }
}

const providerOption = () => new Option('--provider <name>', 'execution provider').choices(['auto', 'cpu', 'cuda']).default('auto');

export function buildProgram(): Command {
  const program = new Command('artist-id')
    .description('Who painted it? Train artist classifiers on folders of paintings, export them to ONNX, classify archives.')
    .version(PACKAGE_VERSION)
    .showHelpAfterError('(run with --help for the options)');

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
      await checkInputs(inputs); // a mistyped path is reported before seconds of model loading
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
    .description('train an artist classifier with one of the methods (rungs) and export it to ONNX')
    .addOption(new Option('--method <method>', 'baseline: the slides\' CNN from scratch; features: dense head on frozen ImageNet features; finetune: top of the base trained with the head; ensemble: soft vote of trained models').choices([...TRAIN_METHODS]).default('features'))
    .option('-d, --data <dir>', 'paintings: <dir>/<artist>/*.jpg or Keras layout <dir>/{train,validation,test}/<artist>/ (required, except for ensemble)')
    .requiredOption('-o, --out <dir>', 'output folder (model.onnx, MODEL_CARD.md, history.json)')
    .option('--artists <list>', 'comma-separated artist folders to use (default: all)', parseList)
    .option('--split <t,v,t>', 'images per artist for train,validation,test (flat layout)', parseSplit, [240, 30, 30])
    .option('--seed <n>', 'seed of the split, initialisation, batch order and augmentation', positiveInt('--seed'), 42)
    .option('--epochs <n>', 'maximum epochs (defaults: baseline 20, features with --solver adam 80, finetune 15; refused with lbfgs, which has none); training stops early without a better validation score', positiveInt('--epochs'))
    .option('--patience <n>', 'epochs without a better validation score before stopping (defaults: baseline 6, features with --solver adam 20, finetune 4)', positiveInt('--patience'))
    .option('--batch-size <n>', 'images (or feature vectors) per training step (defaults: baseline 20, features 32, finetune 16)', positiveInt('--batch-size'))
    .option('--learning-rate <lr>', 'learning rate (defaults: baseline RMSprop 1e-4, features Adam 1e-3, finetune RMSprop 2e-5)', asArgument((v) => expectNumber('--learning-rate', v, 1e-9, 1)))
    .option('--input-size <px>', `baseline: input width = height in pixels, >= 46 (default ${BASELINE_DEFAULT_INPUT_SIZE}; the slides used 150)`, asArgument((v) => expectInteger('--input-size', v, 46, 1024)))
    .option('--no-augment', 'baseline: no random horizontal flips of training images')
    .addOption(new Option('--base <name>', 'features: frozen ImageNet base; vgg16 (the slides\' base, Keras weights file) takes pooled features only').choices(['mobilenetv2-12-int8', 'vgg16']).default('mobilenetv2-12-int8'))
    .addOption(new Option('--features <kind>', 'features, finetune: style statistics (mean/std/Gram of several maps) or the pooled final map (defaults: features style, finetune pooled); finetune with style trains a softmax-regression head (Adam, dropout 0.2) on the style statistics of the base with its fine-tuned top (--train-blocks 0 or 1)').choices(['style', 'pooled']))
    .option('--hidden <n>', 'features: hidden units of the dense head, 0 for logistic regression (default: 0 for style, 64 for pooled)', asArgument((v) => expectInteger('--hidden', v, 0, 4096)))
    .option('--dropout <rate>', 'dropout rate in [0,1) (defaults: baseline 0.5, features 0 style with lbfgs / 0.2 style with adam / 0.5 pooled, finetune head 0.5)', asArgument((v) => expectNumber('--dropout', v, 0, 0.99)))
    .option('--l2 <lambda>', 'features, finetune: L2 penalty on the head\'s Dense kernels; default 1e-3', asArgument((v) => expectNumber('--l2', v, 0, 10)))
    .option('--batch-norm', 'features: BatchNormalization between the hidden Dense and its ReLU (needs --hidden > 0)')
    .addOption(new Option('--lr-schedule <name>', 'features: learning-rate schedule over epochs (default constant)').choices([...LR_SCHEDULE_NAMES]))
    .option('--label-smoothing <eps>', 'features: label smoothing of the targets, in [0, 0.99] (Szegedy et al. 2016; default 0)', asArgument((v) => expectNumber('--label-smoothing', v, 0, 0.99)))
    .option('--mixup <alpha>', 'features: mixup of bottleneck features and targets with lambda ~ Beta(alpha, alpha), alpha in [0, 10] (Zhang et al. 2018; 0.1-0.4 typical; default 0 = off)', asArgument((v) => expectNumber('--mixup', v, 0, 10)))
    .addOption(new Option('--solver <name>', 'features: how the head is fitted: lbfgs (softmax regression solved to convergence on the whole training set; --hidden 0, no dropout; default for style) or adam (mini-batches, best epoch on validation; default for pooled)').choices([...HEAD_SOLVERS]))
    .addOption(new Option('--tta <views>', 'features: test-time augmentation inside the model: flip averages the bottleneck features of the image and its mirror (2x inference cost); default none').choices([...TTA_CHOICES]))
    .option('--views <n>', 'finetune: augmented views per training image, besides the image itself; 0 = none (default 4)', asArgument((v) => expectInteger('--views', v, 0, 64)))
    .option('--train-blocks <n>', 'finetune: top stages of the base that are trained, 0-4 (default 1)', asArgument((v) => expectInteger('--train-blocks', v, 0, 4)))
    .addOption(new Option('--optimizer <name>', 'finetune: optimiser of the fine-tuning step (default rmsprop)').choices(['adam', 'rmsprop']))
    .option('--max-seconds <s>', 'finetune: time budget of the fine-tuning loop, checked after each epoch, 0 = none (default 600)', asArgument((v) => expectNumber('--max-seconds', v, 0)))
    .option('--members <list>', 'ensemble: comma-separated model folders or .onnx files trained on the same data and split (at least 2)', parseMembers)
    .option('--weights-dir <dir>', 'features, finetune: folder with pretrained base weights (else $ARTIST_ID_WEIGHTS_DIR, cache, download)')
    .option('--name <name>', 'model name recorded in the card (default: the output folder name)')
    .option('--overwrite', 'replace a model already in --out')
    .addHelpText('after', `
Options marked "baseline:", "features:", "finetune:" or "ensemble:" apply to that method only; the others
to every method that trains (not ensemble, whose members carry their data, split and seed). Giving an
option to a method it does not apply to is an error.`)
    .action(async (opts, command: Command) => {
      const method = opts.method as TrainMethod;
      checkTrainFlags(command, method);
      if (method !== 'ensemble' && !opts.data) throw new Error(`Expected --data <dir> (a folder of paintings) for --method ${method} but received nothing`);
      if (method === 'ensemble' && !opts.members) throw new Error('Expected --members <list> (at least 2 trained models) for --method ensemble but received nothing');
      const { train: runTraining } = await import('../../training/train.js');
      if (command.getOptionValueSource('split') === 'cli' && opts.data) {
        const { datasetLayout } = await import('../../training/dataset.js');
        if ((await datasetLayout(opts.data)) === 'keras') throw new Error(`--split applies to the flat layout <data>/<artist>/, but ${JSON.stringify(opts.data)} has the Keras layout train/, validation/, test/, whose folders already are the split: drop --split`);
      }
      const common = { out: opts.out, name: opts.name, overwrite: opts.overwrite };
      const split = { data: opts.data, artists: opts.artists, split: opts.split, seed: opts.seed };
      const head = defined({ epochs: opts.epochs, patience: opts.patience, batchSize: opts.batchSize, learningRate: opts.learningRate, hidden: opts.hidden, dropout: opts.dropout, l2: opts.l2, batchNorm: opts.batchNorm, lrSchedule: opts.lrSchedule, labelSmoothing: opts.labelSmoothing, mixup: opts.mixup, solver: opts.solver });
      switch (method) {
        case 'baseline':
          await runTraining({ method, ...common, ...split, ...defined({ inputSize: opts.inputSize, epochs: opts.epochs, patience: opts.patience, batchSize: opts.batchSize, learningRate: opts.learningRate, dropout: opts.dropout, augment: opts.augment }) });
          return;
        case 'features':
          await runTraining({ method, ...common, ...split, base: opts.base, weightsDir: opts.weightsDir, features: opts.features, ...defined({ tta: opts.tta }), head });
          return;
        case 'finetune':
          await runTraining({
            method,
            ...common,
            ...split,
            weightsDir: opts.weightsDir,
            ...defined({ features: opts.features, epochs: opts.epochs, patience: opts.patience, batchSize: opts.batchSize, learningRate: opts.learningRate, views: opts.views, trainBlocks: opts.trainBlocks, optimizer: opts.optimizer, maxSeconds: opts.maxSeconds }),
            head: defined({ dropout: opts.dropout, l2: opts.l2 }),
          });
          return;
        case 'ensemble':
          await runTraining({ method, ...common, members: opts.members, ...defined({ data: opts.data }) });
          return;
      }
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
