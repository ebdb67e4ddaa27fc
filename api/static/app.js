// The researcher's page: ask a question, see whether it waits in the queue (and where) or runs, watch
// each step with its time (server-sent events), read the answer with every sentence's support mark and
// its citations (numbered from 1; a citation opens the cited passage), copy the BibTeX.
// Plain JS, no build step. EventSource cannot send an Authorization header: the stream is read with fetch().
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // {jobId, controller}
let passages = new Map(); // JSON reference id -> reference
let numbers = new Map(); // JSON reference id -> number shown (1, 2, ...)

const STEP_LABELS = {
  retrieve: "Searching the literature",
  evidence: "Selecting quotes from the passages",
  quotes: "Selecting quotes from the passages",
  generate: "Writing a first answer",
  feedback: "Reviewing the answer (self-feedback)",
  edit: "Revising the answer",
  verify: "Checking every citation against its passage",
};

$("api-key").value = localStorage.getItem("openscholar.key") || "";

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").className = kind || "";
}

function headers() {
  const key = $("api-key").value.trim();
  localStorage.setItem("openscholar.key", key);
  return { "Authorization": "Bearer " + key, "Content-Type": "application/json" };
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return (body.message || resp.statusText) + (body.hint ? " (" + body.hint + ")" : "");
  } catch (e) {
    return resp.status + " " + resp.statusText;
  }
}

function stepLabel(ev) {
  const d = ev.detail || {};
  if (ev.step === "retrieve" && d.feedback_index !== undefined && d.feedback_index !== null) {
    return "Searching for more evidence" + (d.query ? ": " + d.query : "");
  }
  if (STEP_LABELS[ev.step]) return STEP_LABELS[ev.step];
  const words = String(ev.step || "step").replace(/[_-]+/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function stepDetail(ev) {
  const d = ev.detail || {};
  if (ev.step === "retrieve" && typeof d.passages === "number") return d.passages + " passages found";
  if (ev.step === "retrieve" && Array.isArray(d.new_references)) return d.new_references.length + " new passages";
  if (ev.step === "feedback" && Array.isArray(d.items)) {
    return d.items.length ? d.items.length + (d.items.length === 1 ? " suggestion" : " suggestions") : "no changes suggested";
  }
  if (ev.step === "edit" && typeof d.kept === "boolean") return d.kept ? "revision kept" : "revision rejected (" + (d.reason || "") + ")";
  if (ev.step === "verify" && typeof d.sentences === "number") {
    let text = (d.supported || 0) + " of " + d.sentences + " sentences supported";
    if (d.contradicted) text += ", " + d.contradicted + " contradicted";
    if (d.attributed) text += ", " + d.attributed + (d.attributed === 1 ? " citation" : " citations") + " added by verification";
    return text;
  }
  return "";
}

function seconds(ms) {
  const s = (Number(ms) || 0) / 1000;
  return s < 10 ? s.toFixed(1) + " s" : Math.round(s) + " s";
}

const openSteps = new Map(); // step name -> its last started <li>

function addStep(ev) {
  const list = $("steps");
  let li = ev.status === "finished" ? openSteps.get(ev.step) : null;
  if (!li) {
    li = document.createElement("li");
    li.dataset.step = ev.step;
    list.appendChild(li);
  }
  li.className = ev.status;
  li.textContent = "";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = stepLabel(ev);
  li.appendChild(label);
  if (ev.status === "started") {
    openSteps.set(ev.step, li);
  } else {
    openSteps.delete(ev.step);
    const secs = document.createElement("span");
    secs.className = "secs";
    secs.textContent = seconds(ev.elapsed_ms);
    li.appendChild(secs);
    const detail = stepDetail(ev);
    if (detail) {
      const d = document.createElement("span");
      d.className = "detail";
      d.textContent = detail;
      li.appendChild(d);
    }
  }
  setStatus("Running: " + stepLabel(ev).toLowerCase() + "…", "running");
}

function showState(state) {
  if (state.status === "queued") {
    const pos = state.queue_position;
    setStatus(pos ? "Queued: position " + pos + " (" + (pos - 1) + " question" + (pos === 2 ? "" : "s") +
      " ahead)" : "Queued: waiting for a worker", "queued");
  } else if (state.status === "running") {
    setStatus("Running…", "running");
  }
}

// Sentence status from the Answer JSON: `status` when the answer has it, else from `supported`.
function sentenceStatus(s) {
  if (s.status === "supported" || s.status === "unsupported" || s.status === "contradicted") return s.status;
  if (s.contradicted === true) return "contradicted";
  return s.supported ? "supported" : "unsupported";
}

function numberReferences(answer) {
  numbers = new Map();
  const order = [];
  for (const s of answer.sentences || []) for (const id of s.citations || []) order.push(id);
  for (const m of String(answer.text || "").matchAll(/\[(\d+)\]/g)) order.push(Number(m[1]));
  for (const ref of answer.references || []) order.push(ref.id);
  for (const id of order) if (passages.has(id) && !numbers.has(id)) numbers.set(id, numbers.size + 1);
}

function citeButton(id, added) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "cite" + (added ? " added" : "");
  b.dataset.ref = id;
  b.textContent = "[" + numbers.get(id) + "]" + (added ? "+" : "");
  b.title = (added ? "Citation added by verification: " : "") + (passages.get(id).title || "(untitled)");
  b.addEventListener("click", () => openPassage(id));
  return b;
}

function renderSentences(box, answer, verified) {
  for (const s of answer.sentences) {
    const span = document.createElement("span");
    const status = sentenceStatus(s);
    span.className = "sentence" + (verified ? " " + status : "");
    span.dataset.status = status;
    span.textContent = s.text;
    box.appendChild(span);
    const added = new Set(s.attributed ? s.citations || [] : s.added || []);
    for (const id of s.citations || []) if (numbers.has(id)) box.appendChild(citeButton(id, added.has(id)));
    if (verified) {
      const mark = document.createElement("span");
      mark.className = "mark " + status;
      mark.textContent = { supported: "✓", unsupported: "?", contradicted: "✗" }[status];
      mark.title = { supported: "supported by the cited passage", unsupported: "no passage in play supports it",
        contradicted: "a passage contradicts it" }[status];
      box.appendChild(mark);
    }
    box.appendChild(document.createTextNode(" "));
  }
}

function renderText(box, answer) {
  for (const part of String(answer.text || "").split(/(\[\d+\])/)) {
    const m = /^\[(\d+)\]$/.exec(part);
    if (m && numbers.has(Number(m[1]))) box.appendChild(citeButton(Number(m[1]), false));
    else box.appendChild(document.createTextNode(part));
  }
}

function renderAnswer(answer) {
  passages = new Map();
  for (const ref of (answer.passages || []).concat(answer.references || [])) passages.set(ref.id, ref);
  numberReferences(answer);
  const box = $("answer");
  box.textContent = "";
  const verified = Boolean(answer.judge);
  const useSentences = Array.isArray(answer.sentences) && answer.sentences.length > 0 && !answer.no_evidence;
  if (useSentences) renderSentences(box, answer, verified);
  else renderText(box, answer);
  $("legend").hidden = !(useSentences && verified);
  const note = $("partial-note");
  note.hidden = !answer.partial;
  if (answer.partial) {
    note.textContent = "Partial answer: the time budget ran out" +
      (answer.partial_step ? " during “" + stepLabel({ step: answer.partial_step }).toLowerCase() + "”" : "") +
      "; this is the checked draft so far.";
  }
  const refs = $("references");
  refs.textContent = "";
  const cited = (answer.references || []).slice().sort((a, b) => (numbers.get(a.id) || 1e9) - (numbers.get(b.id) || 1e9));
  for (const ref of cited) {
    const li = document.createElement("li");
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = "[" + numbers.get(ref.id) + "]";
    li.appendChild(num);
    const a = document.createElement("a");
    a.href = "#";
    a.className = "ref";
    a.dataset.ref = ref.id;
    a.textContent = ref.title || "(untitled)";
    a.addEventListener("click", (e) => { e.preventDefault(); openPassage(ref.id); });
    li.appendChild(a);
    const meta = [(ref.authors || []).slice(0, 3).join(", ") + ((ref.authors || []).length > 3 ? " et al." : ""),
      ref.venue, ref.year].filter(Boolean).join(" · ");
    if (meta) {
      const m = document.createElement("div");
      m.className = "ref-meta";
      m.textContent = meta;
      li.appendChild(m);
    }
    refs.appendChild(li);
  }
  $("bibtex").textContent = answer.bibtex || "";
  $("copy-bibtex").disabled = !answer.bibtex;
  $("answer-section").hidden = false;
}

function openPassage(id) {
  const ref = passages.get(id);
  if (!ref) return;
  $("passage-title").textContent = "[" + (numbers.get(id) || "·") + "] " + (ref.title || "(untitled)");
  const meta = [ref.year, (ref.authors || []).slice(0, 3).join(", "), ref.venue, ref.paper_id ? "paper " + ref.paper_id : ""];
  $("passage-meta").textContent = meta.filter(Boolean).join(" · ");
  $("passage-text").textContent = ref.text || "";
  const link = $("passage-link");
  link.hidden = !ref.url;
  if (ref.url) link.href = ref.url;
  $("passage").showModal();
}

async function copyBibtex() {
  const text = $("bibtex").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) { // clipboard API refused (http, permissions): fall back to a selection copy
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("copy-status").textContent = "copied";
}

async function readEvents(jobId, signal) {
  const resp = await fetch("/v1/jobs/" + jobId + "/events", { headers: headers(), signal });
  if (!resp.ok) throw new Error(await errorText(resp));
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue;
      const payload = JSON.parse(data);
      if (event === "step") addStep(payload);
      else if (event === "status") showState(payload);
      else if (event === "result") return payload;
      else if (event === "error") throw new Error(payload.message || "the event stream failed");
    }
  }
  throw new Error("the event stream ended before the result");
}

async function ask(e) {
  e.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("steps").textContent = "";
  openSteps.clear();
  $("steps-section").hidden = false;
  $("answer-section").hidden = true;
  $("copy-status").textContent = "";
  $("ask").disabled = true;
  setStatus("Sending…");
  const controller = new AbortController();
  try {
    const resp = await fetch("/v1/jobs", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ question, options: { feedback: $("opt-feedback").checked, verify: $("opt-verify").checked } }),
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    const job = await resp.json();
    current = { jobId: job.id, controller };
    $("cancel").hidden = false;
    showState(job);
    const done = await readEvents(job.id, controller.signal);
    if (done.status === "succeeded") {
      renderAnswer(done.result);
      const secs = done.finished_at && done.started_at ? " in " + seconds((done.finished_at - done.started_at) * 1000) : "";
      setStatus((done.result && done.result.partial ? "Partial answer" : "Done") + secs, "done");
    } else if (done.status === "cancelled") {
      setStatus("Cancelled");
    } else {
      const err = done.error || {};
      setStatus("Failed: " + (err.message || "unknown error") + (err.hint ? " (" + err.hint + ")" : ""), "error");
    }
  } catch (err) {
    if (err.name !== "AbortError") setStatus(err.message, "error");
  } finally {
    $("ask").disabled = false;
    $("cancel").hidden = true;
    current = null;
  }
}

async function cancel() {
  if (!current) return;
  await fetch("/v1/jobs/" + current.jobId, { method: "DELETE", headers: headers() });
  setStatus("Cancelling…");
}

$("ask-form").addEventListener("submit", ask);
$("cancel").addEventListener("click", cancel);
$("copy-bibtex").addEventListener("click", copyBibtex);
