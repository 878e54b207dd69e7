/**
 * Learning-rate schedules for the head, as pure functions of the epoch (and, for plateau, of the
 * validation losses seen so far). Epochs are 1-based, as in the training history; a schedule gives the
 * learning rate used for every update of that epoch.
 *
 * - `constant`: `lr0` throughout.
 * - `step`: `lr0 * factor^floor((epoch - 1) / everyEpochs)` (step decay; Keras `LearningRateScheduler`
 *   with a step function, e.g. https://keras.io/api/callbacks/learning_rate_scheduler/).
 * - `cosine`: SGDR without restarts (Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with
 *   Warm Restarts", ICLR, eq. 5): `lrMin + (lr0 - lrMin) * (1 + cos(pi * (epoch - 1) / epochs)) / 2`,
 *   so epoch 1 uses `lr0` and the rate would reach `lrMin` (default 0) right after the last epoch.
 * - `plateau`: Keras `ReduceLROnPlateau` (https://keras.io/api/callbacks/reduce_lr_on_plateau/) on
 *   validation loss, mode `min`, `min_delta` 1e-4 (absolute), `cooldown` 0: when the loss has not
 *   improved on the best seen by more than `min_delta` for `patience` epochs, `lr = max(lr * factor, lrMin)`
 *   and the wait restarts.
 */

/** Schedule names accepted by `HeadConfig.lrSchedule` and `--lr-schedule`. */
export const LR_SCHEDULES = ['constant', 'step', 'cosine', 'plateau'] as const;
export type LrScheduleName = (typeof LR_SCHEDULES)[number];

/** Parameters of the schedules (only the ones a schedule names are read). */
export interface LrScheduleParams {
  /** Base learning rate `lr0` (epoch 1). */
  learningRate: number;
  schedule: LrScheduleName;
  /** step: multiply by `factor` every this many epochs. */
  stepEpochs: number;
  /** step and plateau: multiplier in [0,1) (plateau: (0,1), as Keras refuses factor >= 1). */
  factor: number;
  /** plateau: epochs without improvement of validation loss before the rate is reduced. */
  patience: number;
  /** cosine: the floor reached after the last epoch; plateau: Keras `min_lr`. */
  minLearningRate: number;
  /** Maximum epochs (the cosine period). */
  epochs: number;
}

/** Step decay: `lr0 * factor^floor((epoch - 1) / everyEpochs)`. */
export function stepDecay(lr0: number, epoch: number, everyEpochs: number, factor: number): number {
  return lr0 * factor ** Math.floor((epoch - 1) / everyEpochs);
}

/** Cosine annealing without restarts (SGDR eq. 5 with `T_cur = epoch - 1`, `T_i = epochs`). */
export function cosineAnnealing(lr0: number, epoch: number, epochs: number, lrMin = 0): number {
  return lrMin + ((lr0 - lrMin) * (1 + Math.cos((Math.PI * (epoch - 1)) / epochs))) / 2;
}

/** Keras `ReduceLROnPlateau` state after some epochs. */
export interface PlateauState {
  /** Learning rate for the next epoch. */
  learningRate: number;
  /** Best (lowest) validation loss seen; Infinity before the first epoch. */
  best: number;
  /** Epochs since the last improvement (or the last reduction). */
  wait: number;
}

/** Keras `ReduceLROnPlateau` default `min_delta`. */
export const PLATEAU_MIN_DELTA = 1e-4;

export function plateauStart(lr0: number): PlateauState {
  return { learningRate: lr0, best: Infinity, wait: 0 };
}

/**
 * One `on_epoch_end` of Keras `ReduceLROnPlateau` (mode min, cooldown 0): returns the new state, whose
 * `learningRate` applies to the next epoch. The argument is not modified.
 */
export function plateauUpdate(state: PlateauState, valLoss: number, factor: number, patience: number, lrMin: number): PlateauState {
  if (valLoss < state.best - PLATEAU_MIN_DELTA) return { learningRate: state.learningRate, best: valLoss, wait: 0 };
  const wait = state.wait + 1;
  if (wait >= patience && state.learningRate > lrMin) {
    return { learningRate: Math.max(state.learningRate * factor, lrMin), best: state.best, wait: 0 };
  }
  return { ...state, wait };
}

/** A schedule as used by the training loop: ask for the rate of an epoch, then report its validation loss. */
export interface LrSchedule {
  /** Learning rate for `epoch` (1-based); epochs are asked in order. */
  rateFor(epoch: number): number;
  /** Validation loss measured after the epoch (only `plateau` uses it). */
  observe(valLoss: number): void;
}

/**
 * Checks schedule parameters.
 *
 * @throws Error naming the parameter, the expected range and the value received.
 */
export function validateLrSchedule(p: LrScheduleParams): void {
  const fail = (name: string, expected: string, value: unknown) => {
    throw new Error(`Expected ${expected} for ${name} but received ${JSON.stringify(value)}`);
  };
  if (!LR_SCHEDULES.includes(p.schedule)) fail('lrSchedule', `one of ${LR_SCHEDULES.join(', ')}`, p.schedule);
  if (!(Number.isFinite(p.learningRate) && p.learningRate >= 0)) fail('learningRate', 'a finite number >= 0', p.learningRate);
  if (!(Number.isFinite(p.minLearningRate) && p.minLearningRate >= 0)) fail('lrMin', 'a finite number >= 0', p.minLearningRate);
  if (p.schedule === 'step') {
    if (!(Number.isInteger(p.stepEpochs) && p.stepEpochs >= 1)) fail('lrStepEpochs', 'an integer >= 1', p.stepEpochs);
    if (!(p.factor >= 0 && p.factor < 1)) fail('lrFactor', 'a number in [0,1) for the step schedule', p.factor);
  }
  if (p.schedule === 'plateau') {
    if (!(p.factor > 0 && p.factor < 1)) fail('lrFactor', 'a number in (0,1) for the plateau schedule (Keras ReduceLROnPlateau refuses factor >= 1)', p.factor);
    if (!(Number.isInteger(p.patience) && p.patience >= 1)) fail('lrPatience', 'an integer >= 1', p.patience);
  }
  if (p.schedule === 'cosine' && !(Number.isInteger(p.epochs) && p.epochs >= 1)) fail('epochs', 'an integer >= 1', p.epochs);
}

/** Builds the schedule the training loop follows (see the module comment for the maths). */
export function createLrSchedule(p: LrScheduleParams): LrSchedule {
  validateLrSchedule(p);
  switch (p.schedule) {
    case 'constant':
      return { rateFor: () => p.learningRate, observe: () => {} };
    case 'step':
      return { rateFor: (e) => stepDecay(p.learningRate, e, p.stepEpochs, p.factor), observe: () => {} };
    case 'cosine':
      return { rateFor: (e) => cosineAnnealing(p.learningRate, e, p.epochs, p.minLearningRate), observe: () => {} };
    case 'plateau': {
      let state = plateauStart(p.learningRate);
      return {
        rateFor: () => state.learningRate,
        observe: (loss) => {
          state = plateauUpdate(state, loss, p.factor, p.patience, p.minLearningRate);
        },
      };
    }
  }
}
