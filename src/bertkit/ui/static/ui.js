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

  function columnSelect(name, columns, chosen, optional) {
    const opts = (optional ? ['<option value="">(none)</option>'] : [])
      .concat(columns.map((c) => `<option${c === chosen ? " selected" : ""}>${esc(c)}</option>`));
    return `<label>${name.replace(/_/g, " ")} <select name="${name}" id="${name}">${opts.join("")}</select></label>`;
  }

  async function showPreview(file) {
    $("#preview").innerHTML = ""; $("#columns").innerHTML = ""; $("#defaults").textContent = ""; showError("");
    if (!file) return;
    try {
      const p = await api("GET", "/api/preview?file=" + encodeURIComponent(file));
      const cols = p.columns;
      const head = cols.map((c) => `<th>${esc(c)}</th>`).join("");
      const rows = p.rows.map((r) => "<tr>" + cols.map((c) => `<td>${esc(typeof r[c] === "object" ? JSON.stringify(r[c]) : r[c] ?? "")}</td>`).join("") + "</tr>").join("");
      $("#preview").innerHTML = p.kind === "squad" ? "<p>SQuAD JSON: extractive question answering.</p>"
        : `<p class=muted>${p.kind === "conll" ? "CoNLL: one token per line, tags in the last column" : "table"}; first rows:</p><table class=preview><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`;
      $("#task").value = p.suggested.task || "classification";
      if (p.defaults) {
        const d = p.defaults;
        for (const [f, v] of [["epochs", d.epochs], ["lr", "by model"], ["batch_size", d.batch_size]]) { form.elements[f].placeholder = `auto: ${v}`; }
        $("#defaults").textContent = `${p.count} rows: ${d.dev_split ? `${d.examples} train, a tenth split off as dev (or pick a dev file)` : `all ${d.examples} train, no dev split (too few)`}; with no changes: batch ${d.batch_size}, ${d.epochs} epochs, learning rate ${d.lr}.`;
      }
      if (p.kind === "table") {
        const s = p.suggested;
        $("#columns").innerHTML = columnSelect("text_column", cols, s.text_column, false)
          + columnSelect("text_pair_column", cols, s.text_pair_column, true)
          + columnSelect("label_column", cols, s.label_column, false);
      }
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

function tryInputs(task) {
  if (task === "qa") return '<label>question <input id=question size=60></label><br><label>context <textarea id=context rows=4 cols=70></textarea></label>';
  if (task === "multiple_choice") return '<label>question <input id=question size=60></label><br><label>choices, one per line <textarea id=choices rows=4 cols=60></textarea></label>';
  return '<label>text <textarea id=text rows=3 cols=70></textarea></label>' + (task === "classification" ? '<br><label>second text (pairs) <input id=textpair size=60></label>' : "");
}

function tryItem(task) {
  if (task === "qa") return {question: $("#question").value, context: $("#context").value};
  if (task === "multiple_choice") return {question: $("#question").value, choices: $("#choices").value.split("\n").filter((s) => s.trim())};
  const pair = $("#textpair") && $("#textpair").value;
  return pair ? {text: $("#text").value, text_pair: pair} : $("#text").value;
}

function highlight(text, spans) {
  let out = "", at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    out += esc(text.slice(at, s.start)) + `<mark title="${esc(s.label || "answer")} ${s.score !== undefined ? Number(s.score).toFixed(3) : ""}">${esc(text.slice(s.start, s.end))}<sub>${esc(s.label || "")}</sub></mark>`;
    at = s.end;
  }
  return out + esc(text.slice(at));
}

function showAnswer(task, item, p) {
  const box = $("#answer");
  if (p.probabilities) {
    const rows = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]).map(([k, v]) =>
      `<div class=barrow><span class=barlabel>${esc(k)}</span><span class=bar style="width:${(100 * v).toFixed(1)}%"></span> ${v.toFixed(3)}</div>`).join("");
    box.innerHTML = `<p>label: <b id=predicted>${esc(Array.isArray(p.labels) ? p.labels.join(", ") : p.label)}</b></p>${rows}`;
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
  let task = null, seen = [];
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
    if (s.task && s.task !== task) { task = s.task; $("#tryinputs").innerHTML = tryInputs(task); }
  }

  $("#stop").addEventListener("click", async () => { try { await api("POST", base + "/stop"); } catch (e) { note(e.message); } refresh(); });
  $("#resume").addEventListener("click", async () => { try { await api("POST", base + "/resume"); } catch (e) { note(e.message); } refresh(); });
  for (const b of document.querySelectorAll(".export")) {
    b.addEventListener("click", async () => { try { await api("POST", base + "/export", {format: b.dataset.format}); } catch (e) { note(e.message); } refresh(); });
  }
  $("#try").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const item = tryItem(task);
    try { const r = await api("POST", base + "/predict", {inputs: [item]}); showAnswer(task, item, r.predictions[0]); }
    catch (e) { note(e.message); }
  });
  refresh();
  setInterval(refresh, 1000);
}
