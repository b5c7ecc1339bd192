// The demo page's elements, looked up once by id from index.html (a missing one is a bug
// in the page, reported at start-up).

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html has no #${id}`);
  return el as T;
}

export const ui = {
  status: $("status"),
  files: $<HTMLDetailsElement>("files"),
  filesSummary: $("files-summary"),
  progress: $("progress"),
  device: $<HTMLSelectElement>("device"),
  weights: $<HTMLSelectElement>("weights"),
  deviceNow: $("device-now"),
  deviceWhy: $("device-why"),
  gpuNote: $("gpu-note"),
  deviceError: $("device-error"),
  form: $<HTMLFormElement>("form"),
  task: $<HTMLSelectElement>("task"),
  example: $<HTMLSelectElement>("example"),
  text: $<HTMLTextAreaElement>("text"),
  reference: $("reference"),
  strategy: $<HTMLSelectElement>("strategy"),
  maxTokens: $<HTMLInputElement>("max-tokens"),
  thresholdSet: $<HTMLFieldSetElement>("threshold-set"),
  modeAdaptive: $<HTMLInputElement>("mode-adaptive"),
  modeBudget: $<HTMLInputElement>("mode-budget"),
  modeFixed: $<HTMLInputElement>("mode-fixed"),
  adaptiveNow: $("adaptive-now"),
  budgetNow: $("budget-now"),
  threshold: $<HTMLInputElement>("threshold"),
  thresholdOut: $<HTMLOutputElement>("threshold-out"),
  run: $<HTMLButtonElement>("run"),
  stop: $<HTMLButtonElement>("stop"),
  compare: $<HTMLButtonElement>("compare"),
  resetAdaptive: $<HTMLButtonElement>("reset-adaptive"),
  error: $("error"),
  output: $("output"),
  tokenDetail: $("token-detail"),
  numbers: {
    tokens: $("n-tokens"),
    speed: $("n-speed"),
    exit: $("n-exit"),
    blocks: $("n-blocks"),
    first: $("n-first"),
    passes: $("n-passes"),
  },
  comparison: $("comparison"),
  speedup: $("speedup"),
  leftH: $("left-h"),
  left: $("left"),
  right: $("right"),
  confChart: $("conf-chart") as unknown as SVGSVGElement,
  betaChart: $("beta-chart") as unknown as SVGSVGElement,
  betaNote: $("beta-note"),
};
