// Token ids to text for the tooltips (pure): the trace names the deep model's choice by id
// only, so the page reads the model's own tokenizer.json (the one the package loaded) and
// looks the id up. Unigram (T5's SentencePiece) vocabularies are lists of [piece, score];
// BPE and WordPiece ones map piece -> id. Unit-tested in test/unit/vocab.test.mjs.

interface TokenizerJson {
  model?: { vocab?: Array<[string, number]> | Record<string, number>; replacement?: string };
  added_tokens?: Array<{ id: number; content: string }>;
  decoder?: { replacement?: string };
}

/** A lookup id -> text ("▁" word marks shown as spaces); unknown ids read "#id". */
export function vocabulary(json: unknown): (id: number) => string {
  const t = json as TokenizerJson;
  const pieces = new Map<number, string>();
  const vocab = t.model?.vocab;
  if (Array.isArray(vocab)) vocab.forEach(([piece], id) => pieces.set(id, piece));
  else if (vocab) for (const [piece, id] of Object.entries(vocab)) pieces.set(id, piece);
  for (const { id, content } of t.added_tokens ?? []) pieces.set(id, content);
  const mark = t.decoder?.replacement ?? t.model?.replacement ?? "▁";
  return (id) => {
    const piece = pieces.get(id);
    return piece === undefined ? `#${id}` : piece.split(mark).join(" ");
  };
}
