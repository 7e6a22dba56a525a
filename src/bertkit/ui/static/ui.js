// bertkit ui: the New-run form and the run page. Plain JavaScript, served by the app; no external assets.
"use strict";

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

// Every request that changes something carries a JSON body (or, for an upload, application/octet-stream):
// the server refuses the content types a cross-site form or a no-cors fetch can send.
async function api(method, url, body, raw) {
  const opts = {method, headers: {}, credentials: "same-origin"};
  if (raw !== undefined) { opts.body = raw; opts.headers["Content-Type"] = "application/octet-stream"; }
  else if (body !== undefined || method !== "GET") { opts.body = JSON.stringify(body || {}); opts.headers["Content-Type"] = "application/json"; }
  const resp = await fetch(url, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = {error: `${resp.status} ${resp.statusText}`}; }
  if (!resp.ok) { throw new Error((data && data.error) || `${resp.status} ${resp.statusText}`); }
  return data;
}

// --- New run -----------------------------------------------------------------------------------------------
function bertkitNewRun() {
  const form = $("#newrun"), error = $("#error");
  const showError = (msg) => { error.textContent = msg; };

  // The task list, each task's options and its data columns come from the registered tasks (bertkit.ui.forms).
  const forms = JSON.parse($("#taskforms").textContent);
  let lastPreview = null;

  function columnSelect(field, columns, chosen) {
    const opts = [`<option value="">(default: ${esc(field.default ?? "none")})</option>`]
      .concat(columns.map((c) => `<option${c === chosen ? " selected" : ""}>${esc(c)}</option>`));
    return `<label title="${esc(field.help)}">${esc(field.name.replace(/_/g, " "))} <select name="${esc(field.name)}" id="${esc(field.name)}">${opts.join("")}</select></label>`;
  }

  function optionInput(field, chosen) {
    const id = "opt-" + field.name, title = `${field.help} (${field.flag})`;
    if (field.choices) {
      const opts = [`<option value="">default: ${esc(field.default ?? "auto")}</option>`]
        .concat(field.choices.map((c) => `<option${c === chosen ? " selected" : ""}>${esc(c)}</option>`));
      return `<label title="${esc(title)}">${esc(field.name.replace(/_/g, " "))} <select name="${esc(field.key)}" id="${esc(id)}">${opts.join("")}</select></label>`;
    }
    return `<label title="${esc(title)}">${esc(field.name.replace(/_/g, " "))} <input name="${esc(field.key)}" id="${esc(id)}" placeholder="${esc(field.default ?? "auto")}" value="${esc(chosen ?? "")}"></label>`;
  }

  function renderTask(suggested) {
    const form = forms.find((f) => f.name === $("#task").value) || forms[0];
    const s = suggested || {};
    $("#taskoptions").innerHTML = `<p class=muted>${esc(form.intended_use)}</p>` + form.options.map((f) => optionInput(f, s[f.key])).join("");
    const p = lastPreview;
    $("#columns").innerHTML = p && p.kind === "table" ? form.columns.map((f) => columnSelect(f, p.columns, s[f.name])).join("") : "";
  }

  async function showPreview(file) {
    $("#preview").innerHTML = ""; $("#columns").innerHTML = ""; $("#defaults").textContent = ""; $("#checks").innerHTML = ""; showError("");
    lastPreview = null;
    if (!file) return;
    try {
      const p = await api("GET", "/api/preview?file=" + encodeURIComponent(file));
      const cols = p.columns;
      const head = cols.map((c) => `<th>${esc(c)}</th>`).join("");
      const rows = p.rows.map((r) => "<tr>" + cols.map((c) => `<td>${esc(typeof r[c] === "object" ? JSON.stringify(r[c]) : r[c] ?? "")}</td>`).join("") + "</tr>").join("");
      $("#preview").innerHTML = p.kind === "squad" ? "<p>SQuAD JSON: extractive question answering.</p>"
        : `<p class=muted>${p.kind === "conll" ? "CoNLL: one token per line, tags in the last column" : "table"}; first rows:</p><table class=preview><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`;
      lastPreview = p;
      $("#task").value = p.suggested.task || forms[0].name;
      if (p.defaults) {
        const d = p.defaults;
        for (const [f, v] of [["epochs", d.epochs], ["lr", "by model"], ["batch_size", d.batch_size]]) { form.elements[f].placeholder = `auto: ${v}`; }
        $("#defaults").textContent = `${p.count} rows: ${d.dev_split ? `${d.examples} train, a tenth split off as dev (or pick a dev file)` : `all ${d.examples} train, no dev split (too few)`}; with no changes: batch ${d.batch_size}, ${d.epochs} epochs, learning rate ${d.lr}.`;
      }
      $("#checks").innerHTML = (p.checks || []).map((c) =>
        `<li class=${esc(c.level)}>${esc(c.level)}: ${esc(c.message)}${c.where.length ? ` (first: ${esc(c.where.slice(0, 3).join(", "))})` : ""}</li>`).join("");
      renderTask(p.suggested);
      if (!$("#name").value) {
        $("#name").value = file.split("/").pop().replace(/\.(gz)$/i, "").replace(/\.[^.]+$/, "").replace(/[^A-Za-z0-9._-]/g, "-") + "-" + $("#task").value;
      }
    } catch (e) { showError(e.message); }
  }

  $("#upload").addEventListener("change", async (ev) => {
    const f = ev.target.files[0];
    if (!f) return;
    showError("");
    try {
      const r = await api("PUT", "/api/upload?name=" + encodeURIComponent(f.name), undefined, f);
      for (const sel of [$("#file"), $("#dev")]) {
        if (![...sel.options].some((o) => o.value === r.file)) sel.add(new Option(r.file, r.file));
      }
      $("#file").value = r.file;
      await showPreview(r.file);
    } catch (e) { showError(e.message); }
  });
  $("#file").addEventListener("change", (ev) => showPreview(ev.target.value));
  $("#task").addEventListener("change", () => renderTask(lastPreview && lastPreview.suggested.task === $("#task").value ? lastPreview.suggested : {}));
  renderTask({});

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("");
    const data = {};
    for (const el of form.elements) { if (el.name && el.value !== "") data[el.name] = el.value; }
    $("#start").disabled = true;
    try {
      const r = await api("POST", "/api/runs", data);
      window.location = "/run/" + encodeURIComponent(r.run);
    } catch (e) { showError(e.message); $("#start").disabled = false; }
  });
}

// --- a run ---------------------------------------------------------------------------------------------------
function drawCurve(svg, points, label) {
  const W = 420, H = 200, L = 46, B = 24;
  if (!points.length) { svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="muted">no ${esc(label)} yet</text>`; return; }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-9);
  const px = (x) => L + (W - L - 8) * (x - x0) / (x1 - x0), py = (y) => H - B - (H - B - 8) * (y - y0) / (y1 - y0 || 1);
  const path = points.map((p, i) => `${i ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ");
  const dots = points.length < 40 ? points.map((p) => `<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="2.5"/>`).join("") : "";
  svg.innerHTML = `<line x1="${L}" y1="${H - B}" x2="${W - 8}" y2="${H - B}" class=axis /><line x1="${L}" y1="8" x2="${L}" y2="${H - B}" class=axis />`
    + `<text x="${L - 4}" y="14" text-anchor="end">${y1.toPrecision(3)}</text><text x="${L - 4}" y="${H - B}" text-anchor="end">${y0.toPrecision(3)}</text>`
    + `<text x="${L}" y="${H - 6}">${x0}</text><text x="${W - 8}" y="${H - 6}" text-anchor="end">step ${x1}</text>`
    + `<path d="${path}" class=curve data-points="${points.length}"/>${dots}`;
}

// The "Try it" form follows the input schema the run's task publishes (the HTTP server's too): an object's
// fields, one per property (a list: one item per line), or one text.
function tryFields(schema) {
  const object = (schema.anyOf || [schema]).find((v) => v.type === "object");
  if (!object) return [{name: "text", list: false}];
  return Object.entries(object.properties || {}).map(([name, p]) => ({name, list: p.type === "array"}));
}

function tryInputs(schema) {
  return tryFields(schema).map((f) => `<label>${esc(f.name.replace(/_/g, " "))}${f.list ? ", one per line" : ""} <textarea id="${esc(f.name)}" rows=${f.list || f.name === "context" ? 4 : 3} cols=70></textarea></label>`).join("<br>");
}

function tryItem(schema) {
  const fields = tryFields(schema), item = {};
  for (const f of fields) {
    const v = $("#" + f.name).value;
    if (f.list) item[f.name] = v.split("\n").filter((x) => x.trim());
    else if (v !== "") item[f.name] = v;
  }
  const takesText = (schema.anyOf || [schema]).some((v) => v.type === "string");
  const keys = Object.keys(item);
  return takesText && (fields.length === 1 || (keys.length === 1 && keys[0] === "text")) ? (item.text ?? "") : item;
}

function highlight(text, spans) {
  let out = "", at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    out += esc(text.slice(at, s.start)) + `<mark title="${esc(s.label || "answer")} ${s.score !== undefined ? Number(s.score).toFixed(3) : ""}">${esc(text.slice(s.start, s.end))}<sub>${esc(s.label || "")}</sub></mark>`;
    at = s.end;
  }
  return out + esc(text.slice(at));
}

function showAnswer(item, p) {
  const box = $("#answer");
  if (p.probabilities) {
    const rows = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]).map(([k, v]) =>
      `<div class=barrow><span class=barlabel>${esc(k)}</span><span class=bar style="width:${(100 * v).toFixed(1)}%"></span> ${v.toFixed(3)}</div>`).join("");
    const read = p.windows ? `<p class=muted id=read>read whole in ${p.windows} windows</p>`
      : p.cut_tokens ? `<p class=muted id=read>${p.cut_tokens} tokens past the window were not read</p>` : "";
    box.innerHTML = `<p>label: <b id=predicted>${esc(Array.isArray(p.labels) ? p.labels.join(", ") : p.label)}</b></p>${rows}${read}`;
  } else if (p.entities) {
    const text = typeof item === "string" ? item : item.text;
    box.innerHTML = `<p id=predicted class=entities>${highlight(text, p.entities)}</p>` + (p.entities.length ? "" : "<p class=muted>no entities found</p>");
  } else if (p.answer !== undefined) {
    box.innerHTML = `<p>answer: <b id=predicted>${esc(p.answer)}</b> (${Number(p.score).toFixed(3)})</p><p class=context>${p.start !== undefined && p.answer ? highlight(item.context, [{start: p.start, end: p.end}]) : esc(item.context)}</p>`;
  } else {
    box.innerHTML = `<pre id=predicted>${esc(JSON.stringify(p, null, 2))}</pre>`;
  }
}

function bertkitRun(name) {
  const base = "/api/run/" + encodeURIComponent(name);
  let schema = null, seen = [];
  const note = (msg) => { $("#answer").innerHTML = `<p class=error role=alert>${esc(msg)}</p>`; };

  async function refresh() {
    let s;
    try { s = await api("GET", base); } catch (e) { $("#status").textContent = e.message; return; }
    const st = s.status || {}, job = s.job || {};
    const status = job.state === "queued" ? "queued" : (st.status || job.state || "starting");
    $("#status").textContent = status;
    $("#status").className = "status " + status;
    const metrics = s.metrics || [];
    const step = Math.max(st.step || 0, ...metrics.map((m) => m.step || 0)), total = st.total_steps || 0;
    $("#progress").textContent = total ? `step ${step} of ${total}` : "";
    $("#bar").max = total || 1; $("#bar").value = step;
    seen.push([Date.now() / 1000, step]); seen = seen.filter((x) => x[0] > Date.now() / 1000 - 60);
    const rate = seen.length > 1 ? (seen[seen.length - 1][1] - seen[0][1]) / (seen[seen.length - 1][0] - seen[0][0]) : 0;
    $("#eta").textContent = status === "running" && rate > 0 && total ? `about ${Math.ceil((total - step) / rate)} s left` : "";
    drawCurve($("#loss"), metrics.filter((m) => m.kind === "train" && m.loss !== undefined).map((m) => [m.step, m.loss]), "training loss");
    const key = "dev_" + (s.primary || "loss");
    $("#metricname").textContent = "dev " + (s.primary || "loss");
    drawCurve($("#metric"), metrics.filter((m) => m.kind === "eval" && m[key] !== undefined).map((m) => [m.step, m[key]]), "dev evaluation");
    $("#log").textContent = (s.log || []).join("\n");
    $("#card").textContent = s.card || "(written when the run completes)";
    $("#report").style.display = s.report ? "" : "none";
    $("#stop").disabled = !(job.state === "queued" || job.state === "running");
    $("#resume").disabled = job.state === "queued" || job.state === "running" || st.status === "completed" || !s.exists;
    $("#exports").innerHTML = (s.exports || []).map((e) => `<li>${esc(e.format)}: ${esc(e.state)}${e.download ? ` <a href="${e.download}" download>download</a>` : ""}</li>`).join("");
    if (s.input_schema && !schema) { schema = s.input_schema; $("#tryinputs").innerHTML = tryInputs(schema); }
  }

  $("#stop").addEventListener("click", async () => { try { await api("POST", base + "/stop"); } catch (e) { note(e.message); } refresh(); });
  $("#resume").addEventListener("click", async () => { try { await api("POST", base + "/resume"); } catch (e) { note(e.message); } refresh(); });
  for (const b of document.querySelectorAll(".export")) {
    b.addEventListener("click", async () => { try { await api("POST", base + "/export", {format: b.dataset.format}); } catch (e) { note(e.message); } refresh(); });
  }
  $("#try").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!schema) { note("the run has no fitted task yet"); return; }
    const item = tryItem(schema);
    try { const r = await api("POST", base + "/predict", {inputs: [item]}); showAnswer(item, r.predictions[0]); }
    catch (e) { note(e.message); }
  });
  refresh();
  setInterval(refresh, 1000);
}
