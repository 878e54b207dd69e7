/**
 * Graph surgery for ensembles: several artist-id models merged into one ONNX graph that reads one
 * `image` input and soft-votes.
 *
 *   image [N,H,W,3] uint8 ──> member 0 graph ──> m0/probabilities [N,C], m0/features [N,D0]
 *                       └──> member 1 graph ──> m1/probabilities [N,C], m1/features [N,D1]  ...
 *   Mean(m<i>/probabilities) -> Max(., 1e-12) -> Log -> Div(T) = logits [N,C] -> Softmax(axis 1) = probabilities [N,C]
 *   Concat(m<i>/features, axis 1) = features [N, D0+D1+...]
 *
 * Soft voting (the mean of the members' predicted distributions) is the combination of deep ensembles
 * (Lakshminarayanan, Pritzel & Blundell 2017, "Simple and Scalable Predictive Uncertainty Estimation
 * using Deep Ensembles", NeurIPS, sec. 2.4: `p(y|x) = M^-1 sum_m p_m(y|x)`; scikit-learn
 * `VotingClassifier(voting='soft')`). `logits = log(mean p)` are logits of that mixture (softmax of them
 * gives it back); dividing them by a temperature T fitted on validation (Guo et al. 2017) calibrates it.
 * The floor 1e-12 keeps `log` finite (it matches `calibrateOnValidation`).
 *
 * Member tensors are renamed `m<i>/<name>`; nodes and initializers that are identical across members
 * (same op, attributes and inputs; same initializer bytes) are kept once, so members built on the same
 * frozen base share its computation instead of running it once per member. This is sound because every
 * ONNX op artist-id graphs use is deterministic. Nodes not needed for the three outputs (a member's
 * open-set subgraph, say) are pruned: the ensemble's own open-set score (`msp`, training/ensemble.ts) is
 * read from `probabilities` and needs no graph output.
 */
import { createHash } from 'node:crypto';
import type { ModelCard } from '../src/model/card.js';
import { CARD_METADATA_KEY } from '../src/model/card.js';
import { toNumber, type AttributeProto, type ModelProto, type NodeProto, type OperatorSetId, type TensorProto, type ValueInfoProto } from '../src/onnx/model.js';
import { TENSOR } from './base.js';
import { floatTensor, node, prune } from './graph.js';
import { PRODUCER, artistIdOutputs } from './splice.js';

/** One member: its decoded model, its card, and a label used in errors (name or path). */
export interface EnsembleMember {
  label: string;
  model: ModelProto;
  card: ModelCard;
}

/** Floor applied to the mean probability before `Log` (as in `calibrateOnValidation`). */
export const PROBABILITY_FLOOR = 1e-12;

/** Statistics of a merge: how much the deduplication shared. */
export interface EnsembleGraphStats {
  nodes: number;
  sharedNodes: number;
  initializers: number;
  sharedInitializers: number;
  /** Members imported at a lower default-domain opset than the merge, and how many of their nodes were checked. */
  opsetUpgrades?: OpsetUpgrade[];
}

/**
 * Merges the members into one model with outputs `probabilities`, `logits` `[N,C]` and `features`
 * `[N, sum D_i]` (the arguments are not modified).
 *
 * @param temperature - T > 0 dividing `log(mean p)`; 1 gives the plain mean (a draft to calibrate on).
 * @param card - the ensemble's card, written under {@link CARD_METADATA_KEY}; `card.classes` and
 *   `card.base.featureDim` size the outputs.
 * Members may import the default domain at different opsets (the int8 `features` models are opset 12,
 * `finetune` models 13): the merge uses the highest, after {@link planEnsembleOpsets} has checked that
 * every node of a lower-opset member means the same there.
 *
 * @throws Error naming the member when fewer than two are given, or (from {@link planEnsembleOpsets})
 *   when a lower-opset member uses an operator whose schema changed up to the merge opset.
 */
export function buildEnsembleModel(members: EnsembleMember[], temperature: number, card: ModelCard): { model: ModelProto; stats: EnsembleGraphStats } {
  if (members.length < 2) throw new Error(`Expected at least 2 members for an ensemble but received ${members.length}`);
  if (!(Number.isFinite(temperature) && temperature > 0)) throw new Error(`Expected a finite temperature > 0 but received ${temperature}`);
  const plan = planEnsembleOpsets(members);

  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const valueInfos: ValueInfoProto[] = [];
  const initializerByContent = new Map<string, string>();
  const nodeByKey = new Map<string, string[]>();
  const stats: EnsembleGraphStats = { nodes: 0, sharedNodes: 0, initializers: 0, sharedInitializers: 0 };
  const memberProbabilities: string[] = [];
  const memberFeatures: string[] = [];

  members.forEach((member, i) => {
    const prefix = `m${i}/`;
    const graph = member.model.graph;
    const rename = new Map<string, string>([[member.card.input, TENSOR.image]]);
    const initializerNames = new Set(graph.initializer.map((t) => t.name));
    const extra = graph.input.filter((v) => v.name !== member.card.input && !initializerNames.has(v.name));
    if (extra.length > 0) throw new Error(`Cannot ensemble: member "${member.label}" has graph inputs ${extra.map((v) => v.name).join(', ')} besides its image input "${member.card.input}"`);
    const mapped = (name: string) => (name === '' ? '' : (rename.get(name) ?? `${prefix}${name}`));
    for (const t of graph.initializer) {
      const key = tensorKey(t);
      const existing = initializerByContent.get(key);
      if (existing) {
        rename.set(t.name!, existing);
        stats.sharedInitializers++;
        continue;
      }
      const name = `${prefix}${t.name}`;
      rename.set(t.name!, name);
      initializerByContent.set(key, name);
      initializers.push({ ...t, name });
      stats.initializers++;
    }
    graph.node.forEach((n, j) => {
      const inputs = n.input.map(mapped);
      const key = JSON.stringify([n.op_type, n.domain ?? '', inputs, n.output.length, (n.attribute ?? []).map(attributeKey)]);
      const existing = nodeByKey.get(key);
      if (existing) {
        n.output.forEach((o, k) => o && rename.set(o, existing[k]));
        stats.sharedNodes++;
        return;
      }
      const outputs = n.output.map((o) => (o ? `${prefix}${o}` : ''));
      n.output.forEach((o, k) => o && rename.set(o, outputs[k]));
      nodeByKey.set(key, outputs);
      nodes.push({ ...n, input: inputs, output: outputs, name: `${prefix}${n.name || `node_${j}`}` });
      stats.nodes++;
    });
    for (const v of graph.value_info ?? []) {
      const name = rename.get(v.name);
      if (name?.startsWith(prefix)) valueInfos.push({ ...v, name });
    }
    const output = (name: string, what: string) => {
      const t = rename.get(name);
      if (!t) throw new Error(`Cannot ensemble: member "${member.label}" card names output ${what} "${name}" but no node of its graph produces it`);
      return t;
    };
    memberProbabilities.push(output(member.card.outputs.probabilities, 'probabilities'));
    memberFeatures.push(output(member.card.outputs.features, 'features'));
  });

  const c = card.classes.length;
  // The ensemble's own nodes (Mean, Max, Log, Div, Softmax axis 1 on [N,C], Concat) mean the same at opset >= 8.
  initializers.push(floatTensor('ensemble/floor', [], [PROBABILITY_FLOOR]), floatTensor('ensemble/temperature', [], [temperature]));
  nodes.push(
    node('Mean', memberProbabilities, ['ensemble/mean_probabilities'], 'ensemble/mean'),
    node('Max', ['ensemble/mean_probabilities', 'ensemble/floor'], ['ensemble/floored'], 'ensemble/floor'),
    node('Log', ['ensemble/floored'], ['ensemble/log_mean'], 'ensemble/log'),
    node('Div', ['ensemble/log_mean', 'ensemble/temperature'], [TENSOR.logits], 'ensemble/temperature'),
    node('Softmax', [TENSOR.logits], [TENSOR.probabilities], 'ensemble/softmax', { axis: 1 }),
    node('Concat', memberFeatures, [TENSOR.features], 'ensemble/features', { axis: 1 }),
  );

  const first = members[0];
  const input = first.model.graph.input.find((v) => v.name === first.card.input);
  if (!input) throw new Error(`Cannot ensemble: member "${first.label}" card names input "${first.card.input}" but its graph has inputs ${first.model.graph.input.map((v) => v.name).join(', ')}`);
  const irVersion = Math.max(...members.map((m) => toNumber(m.model.ir_version)));
  const opsetImport: OperatorSetId[] = [...plan.opsets].map(([domain, version]) => ({ domain, version }));
  const model: ModelProto = {
    ir_version: irVersion,
    opset_import: opsetImport,
    producer_name: PRODUCER.name,
    producer_version: PRODUCER.version,
    doc_string: `artist-id ensemble "${card.name}" of ${members.length} models (mean of probabilities, temperature ${temperature.toFixed(4)}): who painted it, among ${c} artists. Input image [N,${card.preprocessing.height},${card.preprocessing.width},3] uint8 NHWC sRGB. See metadata ${CARD_METADATA_KEY}.`,
    graph: {
      name: 'artist-id-ensemble',
      node: nodes,
      initializer: initializers,
      input: [{ ...structuredClone(input), name: TENSOR.image }],
      output: artistIdOutputs(card, 'concatenated member features', 'log of the mean member probability, divided by the temperature'),
      value_info: valueInfos,
    },
    metadata_props: [{ key: CARD_METADATA_KEY, value: JSON.stringify(card) }],
  };
  // Drop member parts the ensemble does not output (e.g. a member's open-set score subgraph).
  prune(model.graph, [TENSOR.probabilities, TENSOR.logits, TENSOR.features]);
  return { model, stats: { ...stats, opsetUpgrades: plan.upgrades } };
}

/** Content key of an initializer: type, dims and a sha256 of its data (its name is not part of it). */
function tensorKey(t: TensorProto): string {
  const hash = createHash('sha256');
  if (t.raw_data && t.raw_data.length > 0) hash.update(t.raw_data);
  else hash.update(JSON.stringify([t.float_data, t.int32_data, t.int64_data?.map(toNumber), t.string_data?.map((s) => Buffer.from(s).toString('base64'))]));
  return `${t.data_type}|${t.dims.map(toNumber).join(',')}|${hash.digest('hex')}`;
}

/** Comparable form of a node attribute (tensors by content, int64 as numbers). */
function attributeKey(a: AttributeProto): unknown {
  return [a.name, a.type, a.f, a.i === undefined ? undefined : toNumber(a.i), a.s ? Buffer.from(a.s).toString('base64') : undefined, a.t ? tensorKey(a.t) : undefined, a.floats, a.ints?.map(toNumber), a.strings?.map((s) => Buffer.from(s).toString('base64'))];
}

/** A member whose default-domain (`ai.onnx`) opset is below the merge opset, its nodes checked compatible. */
export interface OpsetUpgrade {
  member: string;
  from: number;
  to: number;
  /** Default-domain nodes of the member, all checked against {@link OPSET_13_CHANGES}. */
  nodes: number;
}

/**
 * How each `ai.onnx` operator's schema at opset 13 relates to its schema at opset 12, from the ONNX
 * operator changelog (onnx/onnx `docs/Changelog.md`, "Version 13 of the default ONNX operator set",
 * ONNX 1.8.0, and the per-operator version lists of `docs/Operators.md`):
 *
 * - a number `v <= 12`: the opset-13 definition is `Op-v`, the one opset 12 already uses (unchanged);
 * - `'types'`: `Op-13` only widened its type constraints (bfloat16 for nearly all, some integer types)
 *   or documented existing behaviour, so every valid opset-12 node is valid and means the same at 13;
 * - `'per-axis'`: QuantizeLinear-13 / DequantizeLinear-13 added the `axis` attribute for per-axis
 *   scales; an opset-12 node (scalar scale and zero point, no `axis`) is per-tensor at both;
 * - `'axis-coercion'`: Softmax-13, LogSoftmax-13, Hardmax-13 apply along `axis` only (default -1)
 *   where versions 1 and 11 coerced the input to 2-D at `axis` (default 1); the same result exactly
 *   when that axis is the input's last one (e.g. a `[N,C]` input with axis 1 or any input with -1);
 * - a sentence: a change that alters the meaning or the form of opset-12 nodes (refused).
 *
 * Operators missing from the table are refused (unknown to this check). Only the step 12 -> 13 is
 * covered: it is the only one between the product's models (int8 base at 12, tfjs-exported tops at 13).
 */
export const OPSET_13_CHANGES: Readonly<Record<string, number | 'types' | 'per-axis' | 'axis-coercion' | string>> = {
  // Unchanged at 13 (definition version in use at 12 and 13).
  AveragePool: 11, BatchNormalization: 9, Celu: 12, Conv: 11, ConvInteger: 10, ConvTranspose: 11, Einsum: 12,
  Elu: 6, GlobalAveragePool: 1, GlobalMaxPool: 1, GreaterOrEqual: 12, HardSigmoid: 6, InstanceNormalization: 6,
  LeakyRelu: 6, LessOrEqual: 12, MatMulInteger: 10, MaxPool: 12, Not: 1, And: 7, Or: 7, PRelu: 9, QLinearConv: 10,
  QLinearMatMul: 10, Range: 11, Round: 11, Selu: 6, Softplus: 1, Softsign: 1, TopK: 11, Where: 9, ConstantOfShape: 9,
  Sin: 7, Cos: 7,
  // Version 13 widened types only.
  Abs: 'types', Add: 'types', ArgMax: 'types', ArgMin: 'types', Cast: 'types', Ceil: 'types', Clip: 'types',
  Concat: 'types', Constant: 'types', DepthToSpace: 'types', Div: 'types', Dropout: 'types', Equal: 'types',
  Erf: 'types', Exp: 'types', Expand: 'types', Flatten: 'types', Floor: 'types', Gather: 'types',
  GatherElements: 'types', GatherND: 'types', Gemm: 'types', Greater: 'types', Identity: 'types', IsNaN: 'types',
  Less: 'types', Log: 'types', LRN: 'types', MatMul: 'types', Max: 'types', Mean: 'types', Min: 'types',
  Mod: 'types', Mul: 'types', Neg: 'types', NonZero: 'types', Pad: 'types', Pow: 'types', Reciprocal: 'types',
  ReduceL1: 'types', ReduceL2: 'types', ReduceLogSum: 'types', ReduceLogSumExp: 'types', ReduceMax: 'types',
  ReduceMean: 'types', ReduceMin: 'types', ReduceProd: 'types', ReduceSumSquare: 'types', Relu: 'types',
  Reshape: 'types', Shape: 'types', Sigmoid: 'types', Sign: 'types', Size: 'types', Slice: 'types',
  SpaceToDepth: 'types', Sqrt: 'types', Sub: 'types', Sum: 'types', Tanh: 'types', Tile: 'types', Transpose: 'types',
  // Version 13 added per-axis quantization.
  QuantizeLinear: 'per-axis', DequantizeLinear: 'per-axis',
  // Version 13 changed axis semantics.
  Softmax: 'axis-coercion', LogSoftmax: 'axis-coercion', Hardmax: 'axis-coercion',
  // Version 13 changed the node's form.
  Squeeze: 'Squeeze-13 takes `axes` as an input instead of an attribute',
  Unsqueeze: 'Unsqueeze-13 takes `axes` as an input instead of an attribute',
  ReduceSum: 'ReduceSum-13 takes `axes` as an input instead of an attribute (and adds noop_with_empty_axes)',
  Split: 'Split-13 takes `split` as an input instead of an attribute',
  Resize: 'Resize-13 dropped the tf_half_pixel_for_nn coordinate mode and made roi optional',
};

const isDefaultDomain = (domain: string | undefined) => !domain || domain === 'ai.onnx';

/**
 * The operator sets of a merge of `members`: each domain at the highest version any member imports.
 * A member importing the default domain (`ai.onnx`) below that is accepted when every one of its nodes
 * means the same at the merge opset (see {@link OPSET_13_CHANGES}), and kept as-is; other domains
 * (com.microsoft, ...) have no such table and must match unless the lower member uses no node of them.
 *
 * @throws Error naming the member, the node, its op type and both opsets for the first node that would
 *   change meaning (or is not in the table), or for an opset step the table does not cover.
 */
export function planEnsembleOpsets(members: Pick<EnsembleMember, 'label' | 'model'>[]): { opsets: Map<string, number>; upgrades: OpsetUpgrade[] } {
  const domainOf = (d: string | undefined) => (isDefaultDomain(d) ? '' : d!);
  const versionsOf = (m: Pick<EnsembleMember, 'model'>) => new Map(m.model.opset_import.map((o) => [domainOf(o.domain), toNumber(o.version)]));
  const opsets = new Map<string, number>();
  for (const m of members) for (const [domain, version] of versionsOf(m)) opsets.set(domain, Math.max(version, opsets.get(domain) ?? 0));
  const upgrades: OpsetUpgrade[] = [];
  for (const m of members) {
    const own = versionsOf(m);
    for (const [domain, target] of opsets) {
      const from = own.get(domain);
      if (from === undefined || from === target) continue;
      const nodes = m.model.graph.node.filter((n) => domainOf(n.domain) === domain);
      if (domain !== '') {
        if (nodes.length === 0) continue;
        const holder = members.find((o) => versionsOf(o).get(domain) === target)!;
        throw new Error(`Cannot ensemble: member "${m.label}" uses operator set "${domain}" version ${from} (node "${nodes[0].name || nodes[0].op_type}", ${nodes[0].op_type}) but member "${holder.label}" imports version ${target}; there is no compatibility table for that domain, re-export the members with one version`);
      }
      checkDefaultDomainUpgrade(m.label, m.model, from, target);
      upgrades.push({ member: m.label, from, to: target, nodes: nodes.length });
    }
  }
  return { opsets, upgrades };
}

/** Throws unless every default-domain node of `model` (at opset `from`) means the same at opset `to`. */
function checkDefaultDomainUpgrade(label: string, model: ModelProto, from: number, to: number): void {
  const refuse = (n: NodeProto, why: string) => {
    throw new Error(`Cannot ensemble: member "${label}" is opset ${from} and the merge needs opset ${to}, but its node "${n.name || '(unnamed)'}" (${n.op_type}) ${why}; re-export that member at opset ${to}`);
  };
  if (from < 12 || to > 13) {
    throw new Error(`Cannot ensemble: member "${label}" is opset ${from} and the merge needs opset ${to}, but the operator compatibility table (OPSET_13_CHANGES) covers only opset 12 -> 13; re-export the members with one opset`);
  }
  const ranks = inferRanks(model);
  for (const n of model.graph.node) {
    if (!isDefaultDomain(n.domain)) continue;
    const change = OPSET_13_CHANGES[n.op_type];
    if (change === undefined) refuse(n, `uses an operator that is not in the opset ${from} -> ${to} compatibility table, so it cannot be shown to mean the same`);
    if (typeof change === 'number' || change === 'types' || change === 'per-axis') continue;
    if (change === 'axis-coercion') {
      const attr = n.attribute?.find((a) => a.name === 'axis');
      const axis = attr ? toNumber(attr.i) : 1; // versions 1 and 11 default to axis 1
      const rank = ranks.get(n.input[0]);
      if (axis === -1 || (rank !== undefined && (axis < 0 ? axis + rank : axis) === rank - 1)) continue;
      refuse(n, `applies ${n.op_type} at axis ${axis} of a ${rank === undefined ? 'rank-unknown' : `rank-${rank}`} input: opset-${from} ${n.op_type} flattens to 2-D at that axis, ${n.op_type}-13 normalises along it only, which agree only on the last axis`);
    }
    refuse(n, `changed meaning or form at opset 13: ${change}`);
  }
}

/**
 * Ranks of the graph's tensors: declared shapes (inputs, outputs, value_info, initializers), then a
 * forward pass over nodes whose output rank follows from their inputs' (enough to tell a classifier
 * head's `[N,C]` logits).
 */
function inferRanks(model: ModelProto): Map<string, number> {
  const graph = model.graph;
  const ranks = new Map<string, number>();
  for (const v of [...graph.input, ...graph.output, ...(graph.value_info ?? [])]) {
    const dims = v.type?.tensor_type?.shape?.dim;
    if (dims) ranks.set(v.name, dims.length);
  }
  for (const t of graph.initializer) if (t.name) ranks.set(t.name, t.dims.length);
  const sameAsInput = new Set(['Abs', 'Cast', 'Clip', 'Dropout', 'Elu', 'Exp', 'Identity', 'LeakyRelu', 'Log', 'Neg', 'Relu', 'Sigmoid', 'Softmax', 'LogSoftmax', 'Sqrt', 'Tanh']);
  const broadcast = new Set(['Add', 'Sub', 'Mul', 'Div', 'Max', 'Min', 'Mean', 'Sum', 'Pow']);
  for (const n of graph.node) {
    const out = n.output[0];
    if (!out || ranks.has(out) || !isDefaultDomain(n.domain)) continue;
    const inputRanks = n.input.filter(Boolean).map((i) => ranks.get(i));
    const known = inputRanks.every((r) => r !== undefined) ? (inputRanks as number[]) : undefined;
    if (n.op_type === 'Flatten' || n.op_type === 'Gemm') ranks.set(out, 2);
    else if (sameAsInput.has(n.op_type) && inputRanks[0] !== undefined) ranks.set(out, inputRanks[0]);
    else if (broadcast.has(n.op_type) && known) ranks.set(out, Math.max(...known));
    else if (n.op_type === 'MatMul' && known && known.every((r) => r >= 2)) ranks.set(out, Math.max(...known));
  }
  return ranks;
}
