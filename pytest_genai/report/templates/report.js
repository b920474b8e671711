(function () {
  "use strict";
  var doc = JSON.parse(document.getElementById("genai-cases").textContent);
  var F = {}, R = {};
  doc.fields.forEach(function (n, i) { F[n] = i; });
  doc.retrieved_fields.forEach(function (n, i) { R[n] = i; });
  var rows = doc.rows, N = rows.length;
  var body = document.getElementById("cases-body");
  var countEl = document.getElementById("count");
  var els = new Array(N), details = new Array(N), open = new Array(N), hay = null;
  var order = [], view = [], i;
  for (i = 0; i < N; i++) order.push(i);
  // the table shows one page of the filtered, sorted cases: the DOM holds at most `size` rows, so sorting,
  // filtering and searching 10,000 cases only touch arrays (rows and their details are built when first shown)
  var state = { failed: false, regressed: false, flagged: false, q: "", key: null, dir: 1, page: 0, size: 0 };

  function failed(c) { return c[F.error] !== null || (c[F.expect_failures] || []).length > 0; }
  function flagged(c) { return (c[F.safety_flags] || []).length > 0 || c[F.blocked] === 1; }
  function flagText(c) {
    var f = (c[F.safety_flags] || []).slice();
    if (c[F.blocked] === 1) f.push("blocked");
    if (c[F.critical] === 1) f.push("critical");
    return f.join(", ");
  }
  function num(x, d) {
    if (x === null || x === undefined) return "-";
    if (Number.isInteger(x)) return String(x);
    return Math.abs(x) >= 1e-3 ? String(Number(x.toPrecision(d || 4))) : x.toExponential(2);
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function makeRow(k) {
    var c = rows[k], tr = el("tr", null, "case");
    tr.dataset.i = k;
    tr.dataset.id = c[F.id];
    tr.appendChild(el("td", k + 1, "num"));
    var idc = el("td", null, "id"), b = el("button", c[F.id]);
    b.type = "button";
    b.setAttribute("aria-expanded", "false");
    idc.appendChild(b);
    tr.appendChild(idc);
    var bad = failed(c);
    tr.appendChild(el("td", bad ? (c[F.error] !== null ? "error" : "fail") : "pass", bad ? "fail" : "pass"));
    tr.appendChild(el("td", num(c[F.em]), "num"));
    tr.appendChild(el("td", num(c[F.f1]), "num"));
    tr.appendChild(el("td", num(c[F.latency_ms], 5), "num"));
    tr.appendChild(el("td", c[F.input_tokens] + " / " + c[F.output_tokens], "num"));
    tr.appendChild(el("td", num(c[F.cost_usd]), "num"));
    tr.appendChild(el("td", flagText(c), flagged(c) ? "warn" : ""));
    tr.appendChild(el("td", c[F.regressed] ? c[F.regressed].join("; ") : "", "fail"));
    return tr;
  }
  function haystack(k) {
    var c = rows[k], parts = [c[F.id], c[F.question], c[F.answer] || "", (c[F.gold] || []).join("\n"),
      c[F.error] || "", flagText(c), (c[F.expect_failures] || []).join("\n"), (c[F.regressed] || []).join("\n")];
    (c[F.retrieved] || []).forEach(function (r) { parts.push(r[R.chunk_id], r[R.doc_id]); });
    return parts.join("\n").toLowerCase();
  }
  function matches(k) {
    var c = rows[k];
    if (state.failed && !failed(c)) return false;
    if (state.flagged && !flagged(c)) return false;
    if (state.regressed && !c[F.regressed]) return false;
    if (state.q) {
      if (hay === null) { hay = new Array(N); for (var j = 0; j < N; j++) hay[j] = haystack(j); }
      if (hay[k].indexOf(state.q) < 0) return false;
    }
    return true;
  }
  function sortValue(k, key) {
    var c = rows[k];
    switch (key) {
      case "i": return k;
      case "id": return c[F.id];
      case "pass": return failed(c) ? 0 : 1;
      case "tokens": return c[F.input_tokens] + c[F.output_tokens];
      case "flags": return flagText(c);
      case "regressed": return c[F.regressed] ? c[F.regressed].length : 0;
      default: return c[F[key]];
    }
  }
  function resort() {
    var key = state.key, dir = state.dir, vals = new Array(N), k;
    order = [];
    for (k = 0; k < N; k++) { order.push(k); vals[k] = key === null ? k : sortValue(k, key); }
    if (key === null) return;
    order.sort(function (a, b) {
      var x = vals[a], y = vals[b];
      if (x === null || x === undefined) return (y === null || y === undefined) ? a - b : 1;  // no value: last
      if (y === null || y === undefined) return -1;
      if (x < y) return -dir;
      if (x > y) return dir;
      return a - b;
    });
  }
  function refilter() {
    view = order.filter(matches);
    var pages = pageCount();
    if (state.page >= pages) state.page = pages - 1;
  }
  function pageCount() { return state.size > 0 ? Math.max(1, Math.ceil(view.length / state.size)) : 1; }
  function draw() {
    var size = state.size > 0 ? state.size : view.length, start = state.page * size;
    var frag = document.createDocumentFragment();
    view.slice(start, start + size).forEach(function (k) {
      if (!els[k]) els[k] = makeRow(k);
      frag.appendChild(els[k]);
      if (open[k]) frag.appendChild(details[k]);
    });
    body.textContent = "";
    body.appendChild(frag);
    var pages = pageCount(), d = document.body.dataset;
    countEl.textContent = view.length === N ? N + " cases" : view.length + " of " + N + " cases match";
    document.getElementById("page").textContent = "page " + (state.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    d.shown = String(view.length);
    d.q = state.q;
    d.page = String(state.page + 1);
    d.pages = String(pages);
  }
  function update(sort) {
    if (sort) resort();
    refilter();
    draw();
  }
  function dl(pairs) {
    var d = el("dl");
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined) return;
      d.appendChild(el("dt", p[0]));
      var dd = el("dd");
      if (p[1] instanceof Node) dd.appendChild(p[1]); else dd.textContent = String(p[1]);
      d.appendChild(dd);
    });
    return d;
  }
  function list(items) {
    var ul = el("ul");
    items.forEach(function (t) { ul.appendChild(el("li", t)); });
    return ul;
  }
  function chunks(rs) {
    var t = el("table"), h = el("tr"), th = el("thead"), tb = el("tbody");
    ["rank", "chunk", "doc", "score", "used in context"].forEach(function (n) { h.appendChild(el("th", n)); });
    th.appendChild(h);
    t.appendChild(th);
    rs.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("td", r[R.rank], "num"));
      tr.appendChild(el("td", r[R.chunk_id]));
      tr.appendChild(el("td", r[R.doc_id]));
      tr.appendChild(el("td", num(r[R.score]), "num"));
      tr.appendChild(el("td", r[R.used] === null ? "-" : (r[R.used] ? "yes" : "no")));
      tb.appendChild(tr);
    });
    t.appendChild(tb);
    return t;
  }
  function makeDetail(k) {
    var c = rows[k], tr = el("tr", null, "detail"), td = el("td");
    td.colSpan = 10;
    var flags = flagText(c);
    var safety = c[F.safety_flags] === null ? "not checked" : (flags || "none");
    if (c[F.toxicity] !== null) safety += " (toxicity " + num(c[F.toxicity]) + ")";
    var measured = "EM " + num(c[F.em]) + " · F1 " + num(c[F.f1]) + " · latency " + num(c[F.latency_ms], 5) +
      " ms · tokens " + c[F.input_tokens] + " in / " + c[F.output_tokens] + " out · cost " + num(c[F.cost_usd]) + " USD";
    if (c[F.hit_at_k] !== null) measured += " · hit@k " + num(c[F.hit_at_k]);
    if (c[F.reciprocal_rank] !== null) measured += " · RR " + num(c[F.reciprocal_rank]);
    if (c[F.cached] !== null) measured += c[F.cached] ? " · cached" : " · not cached";
    var rep = c[F.repeats];  // sampled repeats: [passed, n, each repeat's answer]
    var rs = c[F.retrieved] || [];
    td.appendChild(dl([
      ["case", c[F.id]],
      ["question", el("pre", c[F.question])],
      ["answer", c[F.answer] === null ? "(no answer)" : el("pre", c[F.answer], "answer")],
      ["gold answers", list(c[F.gold] || [])],
      ["measured", measured + (rep ? " (means over the repeats; tokens and cost: their sum)" : "")],
      ["repeats", rep ? rep[0] + " of " + rep[1] + " passed" : null],
      ["repeat answers", rep ? list(rep[2].map(function (a) { return a === null ? "(no answer)" : a; })) : null],
      ["error", c[F.error] === null ? null : el("pre", c[F.error], "fail")],
      ["expect failures", (c[F.expect_failures] || []).length ? list(c[F.expect_failures]) : null],
      ["regressed", c[F.regressed] ? c[F.regressed].join("; ") : null],
      ["safety", safety],
      ["retrieved", rs.length ? chunks(rs) : null],
      ["rendered prompt", c[F.prompt] === null ? "(not recorded)" : el("pre", c[F.prompt], "prompt")]
    ]));
    tr.appendChild(td);
    return tr;
  }
  function toggle(k) {
    open[k] = !open[k];
    if (open[k] && !details[k]) details[k] = makeDetail(k);
    var tr = els[k];
    tr.classList.toggle("open", open[k]);
    tr.querySelector("td.id button").setAttribute("aria-expanded", String(open[k]));
    if (open[k]) tr.after(details[k]); else if (details[k].parentNode) details[k].remove();
  }
  body.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.case");
    if (tr && !String(window.getSelection ? window.getSelection() : "").length) toggle(Number(tr.dataset.i));
  });
  document.querySelectorAll("#cases thead th").forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.dataset.key;
      state.dir = state.key === key ? -state.dir : 1;
      state.key = key;
      state.page = 0;
      document.querySelectorAll("#cases thead th").forEach(function (o) { o.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      update(true);
    });
  });
  ["failed", "regressed", "flagged"].forEach(function (name) {
    var box = document.getElementById("f-" + name);
    state[name] = box.checked;
    box.addEventListener("change", function () { state[name] = box.checked; state.page = 0; update(false); });
  });
  var q = document.getElementById("q"), size = document.getElementById("size"), timer = null;
  state.q = q.value.trim().toLowerCase();
  q.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.q = q.value.trim().toLowerCase(); state.page = 0; update(false); }, 120);
  });
  state.size = Number(size.value);
  size.addEventListener("change", function () { state.size = Number(size.value); state.page = 0; update(false); });
  document.getElementById("prev").addEventListener("click", function () { state.page--; draw(); });
  document.getElementById("next").addEventListener("click", function () { state.page++; draw(); });
  update(true);
  document.body.dataset.ready = "1";
})();
