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
 * open-set subgraph, say) are pruned; the ensemble card has no `openSet`.
 */
import { createHash } from 'node:crypto';
import type { ModelCard } from '../src/model/card.js';
import { CARD_METADATA_KEY } from '../src/model/card.js';
import { toNumber, type AttributeProto, type ModelProto, type NodeProto, type OperatorSetId, type TensorProto, type ValueInfoProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { TENSOR } from './base.js';
import { floatTensor, node, prune, valueInfo } from './graph.js';
import { PRODUCER } from './splice.js';

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
}

/**
 * Merges the members into one model with outputs `probabilities`, `logits` `[N,C]` and `features`
 * `[N, sum D_i]` (the arguments are not modified).
 *
 * @param temperature - T > 0 dividing `log(mean p)`; 1 gives the plain mean (a draft to calibrate on).
 * @param card - the ensemble's card, written under {@link CARD_METADATA_KEY}; `card.classes` and
 *   `card.base.featureDim` size the outputs.
 * @throws Error naming the member when fewer than two are given, or when members import the same
 *   operator-set domain at different versions (ops would change meaning).
 */
export function buildEnsembleModel(members: EnsembleMember[], temperature: number, card: ModelCard): { model: ModelProto; stats: EnsembleGraphStats } {
  if (members.length < 2) throw new Error(`Expected at least 2 members for an ensemble but received ${members.length}`);
  if (!(Number.isFinite(temperature) && temperature > 0)) throw new Error(`Expected a finite temperature > 0 but received ${temperature}`);
  const opsets = new Map<string, { version: number; from: string }>();
  for (const m of members) {
    for (const o of m.model.opset_import) {
      const domain = o.domain ?? '';
      const version = toNumber(o.version);
      const seen = opsets.get(domain);
      if (seen && seen.version !== version) {
        throw new Error(`Cannot ensemble: member "${m.label}" imports operator set "${domain || 'ai.onnx'}" version ${version} but member "${seen.from}" imports version ${seen.version}; ops would change meaning, re-export the members with one opset`);
      }
      opsets.set(domain, { version, from: m.label });
    }
  }

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
  const opsetImport: OperatorSetId[] = [...opsets].map(([domain, { version }]) => ({ domain, version }));
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
      output: [
        valueInfo(TENSOR.probabilities, DataType.FLOAT, ['N', c], `softmax probabilities over: ${card.classes.join(', ')}`),
        valueInfo(TENSOR.logits, DataType.FLOAT, ['N', c], 'log of the mean member probability, divided by the temperature'),
        valueInfo(TENSOR.features, DataType.FLOAT, ['N', card.base.featureDim], 'concatenated member features'),
      ],
      value_info: valueInfos,
    },
    metadata_props: [{ key: CARD_METADATA_KEY, value: JSON.stringify(card) }],
  };
  // Drop member parts the ensemble does not output (e.g. a member's open-set score subgraph).
  prune(model.graph, [TENSOR.probabilities, TENSOR.logits, TENSOR.features]);
  return { model, stats };
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
