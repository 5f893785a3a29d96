/* charrnn's generation in the browser: the step of charrnn/sampling/blas.py, the pick of
 * charrnn/sampling/pick.py and the uniforms of charrnn/sampling/rng.py, in float32.
 *
 * The same source runs on the page (fallback, debug hook) and in a Web Worker made from a Blob,
 * so it defines everything on `self` and touches no DOM. Values that numpy rounds to float32 after
 * each operation are rounded here too: stored into a Float32Array, or through Math.fround. The
 * matrix-vector products sum in double (BLAS sums in float32 in its own order): that, Math.tanh and
 * Math.exp against numpy's float32 kernels are the only differences, all within float rounding.
 */
(function (root) {
  "use strict";
  const f32 = Math.fround;
  const F32_TINY = 1.1754943508222875e-38; // np.finfo(np.float32).tiny
  const F32_MAX = 3.4028234663852886e38;
  const GATES = { lstm: 4, gru: 3, rnn: 1 };

  function base64Bytes(text) {
    const binary = atob(text.replace(/\s+/g, ""));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  let halfTable = null;
  function halves() {
    if (halfTable === null) {
      halfTable = new Float32Array(65536);
      for (let h = 0; h < 65536; h++) {
        const sign = h & 0x8000 ? -1 : 1;
        const exp = (h >> 10) & 31;
        const man = h & 1023;
        halfTable[h] =
          exp === 0 ? sign * man * 2 ** -24 : exp === 31 ? (man ? NaN : sign * Infinity) : sign * (1 + man / 1024) * 2 ** (exp - 15);
      }
    }
    return halfTable;
  }

  /* One tensor of the embedded blob as float32: f32 copied, f16 widened, i8 times its row's scale. */
  function tensor(spec, buffer) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    if (spec.dtype === "f32") return new Float32Array(buffer.slice(spec.offset, spec.offset + 4 * count));
    const out = new Float32Array(count);
    if (spec.dtype === "f16") {
      const table = halves();
      const src = new Uint16Array(buffer, spec.offset, count);
      for (let i = 0; i < count; i++) out[i] = table[src[i]];
      return out;
    }
    if (spec.dtype === "i8") {
      const src = new Int8Array(buffer, spec.offset, count);
      const rows = spec.shape[0];
      const cols = count / rows;
      const scales = new Float32Array(buffer.slice(spec.scales, spec.scales + 4 * rows));
      for (let r = 0; r < rows; r++) {
        const s = scales[r];
        for (let c = 0, o = r * cols; c < cols; c++) out[o + c] = src[o + c] * s;
      }
      return out;
    }
    throw new Error("unknown tensor type " + spec.dtype);
  }

  /* out[r] = f32(W[r] . x) + b[r], as numpy's x @ W.T then += b (two float32 roundings). Four rows
   * at a time, each x[c] read once for the four: twice the rate of one row at a time in V8
   * (2x384 LSTM: 1,000 against 500 chars/s). */
  function matvec(w, b, x, rows, cols, out) {
    let r = 0;
    for (; r + 3 < rows; r += 4) {
      const o0 = r * cols, o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let c = 0; c < cols; c++) {
        const xc = x[c];
        s0 += w[o0 + c] * xc;
        s1 += w[o1 + c] * xc;
        s2 += w[o2 + c] * xc;
        s3 += w[o3 + c] * xc;
      }
      out[r] = b === null ? s0 : f32(s0) + b[r];
      out[r + 1] = b === null ? s1 : f32(s1) + b[r + 1];
      out[r + 2] = b === null ? s2 : f32(s2) + b[r + 2];
      out[r + 3] = b === null ? s3 : f32(s3) + b[r + 3];
    }
    for (; r < rows; r++) {
      const o = r * cols;
      let s = 0;
      for (let c = 0; c < cols; c++) s += w[o + c] * x[c];
      out[r] = b === null ? s : f32(s) + b[r];
    }
  }

  function sigmoid(v) {
    // blas.sigmoid_: 0.5 tanh(x / 2) + 0.5, each operation rounded to float32
    return f32(f32(Math.tanh(f32(v * 0.5))) * 0.5 + 0.5);
  }

  /* The model in charrnn.sampling.weights.StepWeights' layout. */
  function Model(header, buffer) {
    const get = (name) => tensor(header.tensors[name], buffer);
    this.cell = header.cell;
    this.layers = header.layers;
    this.hidden = header.hidden;
    this.embedSize = header.embed;
    this.chars = Array.from(header.chars);
    this.vocab = this.chars.length;
    this.index = new Map(this.chars.map((c, i) => [c, i]));
    this.gates = GATES[this.cell];
    this.embed = get("embed");
    this.w0 = get("input0.w");
    this.b0 = get("input0.b");
    const pair = (prefix, n, bias) => {
      const out = [];
      for (let i = 0; i < n; i++) out.push({ w: get(`${prefix}.${i}.w`), b: bias ? get(`${prefix}.${i}.b`) : null });
      return out;
    };
    const gru = this.cell === "gru";
    this.hh = pair("hh", gru ? this.layers : 1, gru);
    this.ih = gru ? pair("ih", this.layers - 1, true) : [];
    this.cat = gru ? [] : pair("cat", this.layers - 1, true);
    this.headW = get("head.w");
    this.headB = get("head.b");
    this.table = new Array(this.vocab).fill(null); // layer 0's input gates per id, made on first use
    const width = this.gates * this.hidden;
    this.gi = new Float32Array(width);
    this.gh = new Float32Array(width);
    this.xh = new Float32Array(2 * this.hidden);
  }

  Model.prototype.state = function () {
    const zeros = () => Array.from({ length: this.layers }, () => new Float32Array(this.hidden));
    return { h: zeros(), c: this.cell === "lstm" ? zeros() : null };
  };

  Model.prototype.row = function (id) {
    let row = this.table[id];
    if (row === null) {
      const e = this.embedSize;
      row = new Float32Array(this.gates * this.hidden);
      matvec(this.w0, this.b0, this.embed.subarray(id * e, (id + 1) * e), this.gates * this.hidden, e, row);
      this.table[id] = row;
    }
    return row;
  };

  /* One character through every layer (blas.BlasStepper.step_numpy); the logits into `logits`. */
  Model.prototype.step = function (state, id, logits) {
    const H = this.hidden;
    const gh = this.gh;
    let x = null;
    for (let layer = 0; layer < this.layers; layer++) {
      const h = state.h[layer];
      if (this.cell === "gru") {
        let gi = this.gi;
        if (layer === 0) gi = this.row(id);
        else matvec(this.ih[layer - 1].w, this.ih[layer - 1].b, x, 3 * H, H, gi);
        matvec(this.hh[layer].w, this.hh[layer].b, h, 3 * H, H, gh);
        for (let j = 0; j < H; j++) {
          const r = sigmoid(f32(gi[j] + gh[j]));
          const z = sigmoid(f32(gi[H + j] + gh[H + j]));
          const n = f32(Math.tanh(f32(f32(gh[2 * H + j] * r) + gi[2 * H + j])));
          h[j] = f32(z * f32(h[j] - n)) + n;
        }
      } else {
        const g = this.gi;
        if (layer === 0) {
          const row = this.row(id);
          matvec(this.hh[0].w, null, h, this.gates * H, H, gh);
          for (let j = 0; j < g.length; j++) g[j] = row[j] + gh[j];
        } else {
          this.xh.set(x, 0);
          this.xh.set(h, H);
          matvec(this.cat[layer - 1].w, this.cat[layer - 1].b, this.xh, this.gates * H, 2 * H, g);
        }
        if (this.cell === "lstm") {
          const c = state.c[layer];
          for (let j = 0; j < H; j++) {
            const i = sigmoid(g[j]);
            const f = sigmoid(g[H + j]);
            const gg = f32(Math.tanh(g[2 * H + j]));
            const o = sigmoid(g[3 * H + j]);
            const cj = f32(f32(f * c[j]) + f32(i * gg));
            c[j] = cj;
            h[j] = f32(Math.tanh(cj)) * o;
          }
        } else {
          for (let j = 0; j < H; j++) h[j] = Math.tanh(g[j]);
        }
      }
      x = h;
    }
    matvec(this.headW, this.headB, x, this.vocab, H, logits);
    return logits;
  };

  /* rng.uniform(seed, step): SplitMix64 output `step` of `seed` (a BigInt), top 24 bits / 2^24. */
  const MASK = (1n << 64n) - 1n;
  function uniform(seed, step) {
    let z = (seed + (BigInt(step) + 1n) * 0x9e3779b97f4a7c15n) & MASK;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
    z ^= z >> 31n;
    return Number(z >> 40n) / 16777216;
  }

  const bits = new Float32Array(1);
  const bitsU = new Uint32Array(bits.buffer);
  function below(x) {
    // np.nextafter(x, 0) in float32, for x > 0
    bits[0] = x;
    bitsU[0] -= 1;
    return bits[0];
  }

  /* numpy's float32 sum along a contiguous axis (pairwise: 8 accumulators, blocks of 128). */
  function pairwiseSum(a, start, n) {
    if (n < 8) {
      let s = 0;
      for (let i = 0; i < n; i++) s = f32(s + a[start + i]);
      return s;
    }
    if (n <= 128) {
      const r = [a[start], a[start + 1], a[start + 2], a[start + 3], a[start + 4], a[start + 5], a[start + 6], a[start + 7]];
      let i = 8;
      for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = f32(r[j] + a[start + i + j]);
      let s = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
      for (; i < n; i++) s = f32(s + a[start + i]);
      return s;
    }
    let half = Math.floor(n / 2);
    half -= half % 8;
    return f32(pairwiseSum(a, start, half) + pairwiseSum(a, start + half, n - half));
  }

  /* pick.adjust (bias/ban, repetition, presence/frequency) then pick.choose, for one row. */
  function pick(logits, s, counts, u, work) {
    const V = logits.length;
    const l = work.l;
    l.set(logits);
    if (s.bias !== null) for (let i = 0; i < V; i++) l[i] = l[i] + s.bias[i];
    if (counts !== null) {
      const p = f32(s.repetition_penalty);
      if (p !== 1) for (let i = 0; i < V; i++) if (counts[i] > 0) l[i] = l[i] > 0 ? l[i] / p : l[i] * p;
      if (s.presence_penalty || s.frequency_penalty) {
        const pres = f32(s.presence_penalty), freq = f32(s.frequency_penalty);
        for (let i = 0; i < V; i++) l[i] = l[i] - f32(f32(pres * (counts[i] > 0 ? 1 : 0)) + f32(freq * counts[i]));
      }
    }
    let best = 0;
    for (let i = 1; i < V; i++) if (l[i] > l[best]) best = i;
    if (s.temperature < F32_TINY) return best; // greedy: the first likeliest
    const top = l[best];
    const t = f32(Math.min(s.temperature, F32_MAX));
    for (let i = 0; i < V; i++) l[i] = f32(l[i] - top) / t;
    if (s.top_k !== null && s.top_k < V) {
      const sorted = work.sorted;
      sorted.set(l);
      sorted.sort();
      const kth = sorted[V - s.top_k];
      for (let i = 0; i < V; i++) if (l[i] < kth) l[i] = -Infinity;
    }
    for (let i = 0; i < V; i++) l[i] = Math.exp(l[i]); // l now holds the weights
    if (s.top_p !== null && s.top_p < 1) {
      const total = pairwiseSum(l, 0, V);
      const probs = work.probs;
      for (let i = 0; i < V; i++) probs[i] = l[i] / total;
      const order = work.order;
      for (let i = 0; i < V; i++) order[i] = i;
      order.sort((a, b) => probs[b] - probs[a] || a - b); // np.argsort(-probs, kind="stable")
      const p = f32(s.top_p);
      let mass = 0;
      for (let k = 0; k < V; k++) {
        const i = order[k];
        mass = f32(mass + probs[i]);
        l[i] = k > 0 && f32(mass - probs[i]) >= p ? 0 : probs[i];
      }
    }
    if (s.min_p !== null && s.min_p > 0) {
      let most = l[0];
      for (let i = 1; i < V; i++) if (l[i] > most) most = l[i];
      const floor = f32(most * f32(s.min_p));
      for (let i = 0; i < V; i++) if (l[i] < floor) l[i] = 0;
    }
    const cdf = work.cdf;
    let acc = 0;
    for (let i = 0; i < V; i++) cdf[i] = acc = f32(acc + l[i]);
    const total = cdf[V - 1];
    const target = Math.min(f32(u * total), below(total));
    let index = 0;
    for (let i = 0; i < V; i++) if (cdf[i] <= target) index++;
    return index;
  }

  function describe(chars) {
    return chars.map((c) => JSON.stringify(c) + " (U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + ")").join(", ");
  }

  /* One sample: the prime fed, then `length` picks (generate.start_ids, engine.Row), in slices. */
  function Sampler(model, o) {
    this.model = model;
    this.o = o;
    const prime = Array.from(o.prime);
    const missing = [...new Set(prime.filter((c) => !model.index.has(c)))];
    if (missing.length) throw new Error(`the prime uses ${missing.length} character(s) the model never saw: ${describe(missing.slice(0, 10))}`);
    let start = prime.map((c) => model.index.get(c));
    if (!start.length) {
      const first = ["\n", " "].find((c) => model.index.has(c));
      start = [first === undefined ? 0 : model.index.get(first)];
    }
    this.start = start;
    this.bias = null;
    if (o.ban) {
      this.bias = new Float32Array(model.vocab);
      for (const c of o.ban) if (model.index.has(c)) this.bias[model.index.get(c)] = -Infinity;
      if (!this.bias.some((b) => b === 0)) throw new Error("the ban list leaves no character to generate");
    }
    this.settings = Object.assign({}, o, { bias: this.bias });
    this.counts = null;
    this.window = [];
    if (o.repetition_penalty !== 1 || o.presence_penalty !== 0 || o.frequency_penalty !== 0) {
      this.counts = new Float32Array(model.vocab);
      for (const id of start.slice(-o.penalty_window)) this.count(id);
    }
    this.seed = BigInt(o.seed);
    this.state = model.state();
    this.logits = new Float32Array(model.vocab);
    const V = model.vocab;
    this.work = { l: new Float32Array(V), sorted: new Float32Array(V), probs: new Float32Array(V), order: new Array(V), cdf: new Float32Array(V) };
    this.fed = 0;
    this.made = 0;
    this.text = "";
    this.done = false;
  }

  Sampler.prototype.count = function (id) {
    if (this.window.length === this.o.penalty_window) this.counts[this.window.shift()] -= 1;
    this.window.push(id);
    this.counts[id] += 1;
  };

  /* Work for about `ms` milliseconds; the characters made meanwhile. */
  Sampler.prototype.run = function (ms) {
    const until = Date.now() + ms;
    const model = this.model;
    let out = "";
    while (!this.done && Date.now() < until) {
      for (let k = 0; k < 8 && !this.done; k++) {
        if (this.fed < this.start.length) {
          model.step(this.state, this.start[this.fed++], this.logits);
          if (this.fed === this.start.length && this.o.length === 0) this.done = true;
          continue;
        }
        const id = pick(this.logits, this.settings, this.counts, uniform(this.seed, this.made), this.work);
        this.made++;
        if (this.counts !== null) this.count(id);
        const ch = model.chars[id];
        out += ch;
        this.text += ch;
        if (this.made >= this.o.length || this.o.stop.some((s) => this.text.endsWith(s))) this.done = true;
        else model.step(this.state, id, this.logits);
      }
    }
    return out;
  };

  /* Logits after each of `ids` (the debug hook the tests read). */
  function logitsAlong(model, ids) {
    const state = model.state();
    const out = [];
    for (const id of ids) out.push(Array.from(model.step(state, id, new Float32Array(model.vocab))));
    return out;
  }

  /* The message loop shared by the worker and the page's fallback: load, generate, stop. */
  function host(post, pause) {
    let model = null;
    let job = 0;
    async function generate(my, options) {
      let sampler;
      try {
        sampler = new Sampler(model, options);
      } catch (err) {
        post({ type: "error", message: err.message });
        return;
      }
      const began = Date.now();
      while (my === job) {
        const text = sampler.run(25);
        post({ type: "text", text, done: sampler.done, made: sampler.made, ms: Date.now() - began });
        if (sampler.done) return;
        await pause();
      }
    }
    return function (message) {
      if (message.type === "load") {
        model = new Model(message.header, message.buffer);
        post({ type: "ready" });
      } else if (message.type === "generate") {
        generate(++job, message.options);
      } else if (message.type === "stop") {
        job++;
      }
    };
  }

  function serveWorker(scope) {
    const pause = () =>
      new Promise((resolve) => {
        const channel = new MessageChannel(); // a macrotask without setTimeout's 4 ms clamp
        channel.port1.onmessage = () => resolve();
        channel.port2.postMessage(0);
      });
    const handle = host((m) => scope.postMessage(m), pause);
    scope.onmessage = (event) => handle(event.data);
  }

  root.CharEngine = { base64Bytes, Model, Sampler, pick, uniform, pairwiseSum, logitsAlong, host, serveWorker };
})(self);
