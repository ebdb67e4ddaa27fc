// The researcher's page: ask a question, watch the steps arrive (server-sent events), read the
// answer whose [n] citations open the cited passage, copy the BibTeX. Plain JS, no build step.
// EventSource cannot send an Authorization header, so the event stream is read with fetch().
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // {jobId, controller}
let passages = new Map();

$("api-key").value = localStorage.getItem("openscholar.key") || "";

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
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

function addStep(ev) {
  const list = $("steps");
  const id = "step-" + ev.step;
  let li = document.getElementById(id);
  if (!li) {
    li = document.createElement("li");
    li.id = id;
    li.dataset.step = ev.step;
    list.appendChild(li);
  }
  li.className = ev.status;
  li.textContent = ev.step + " ";
  if (ev.status === "finished") {
    const ms = document.createElement("span");
    ms.className = "ms";
    ms.textContent = Math.round(ev.elapsed_ms) + " ms";
    li.appendChild(ms);
  }
}

function renderAnswer(answer) {
  passages = new Map();
  for (const ref of (answer.passages || []).concat(answer.references || [])) passages.set(ref.id, ref);
  const box = $("answer");
  box.textContent = "";
  const parts = String(answer.text || "").split(/(\[\d+\])/);
  for (const part of parts) {
    const m = /^\[(\d+)\]$/.exec(part);
    if (m && passages.has(Number(m[1]))) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "cite";
      b.dataset.ref = m[1];
      b.textContent = "[" + m[1] + "]";
      b.addEventListener("click", () => openPassage(Number(m[1])));
      box.appendChild(b);
    } else {
      box.appendChild(document.createTextNode(part));
    }
  }
  const refs = $("references");
  refs.textContent = "";
  for (const ref of answer.references || []) {
    const li = document.createElement("li");
    li.value = ref.id;
    const a = document.createElement("a");
    a.href = "#";
    a.className = "ref";
    a.dataset.ref = ref.id;
    a.textContent = "[" + ref.id + "] " + (ref.title || "(untitled)") + (ref.year ? " (" + ref.year + ")" : "");
    a.addEventListener("click", (e) => { e.preventDefault(); openPassage(ref.id); });
    li.appendChild(a);
    refs.appendChild(li);
  }
  $("bibtex").textContent = answer.bibtex || "";
  $("copy-bibtex").disabled = !answer.bibtex;
  $("answer-section").hidden = false;
}

function openPassage(id) {
  const ref = passages.get(id);
  if (!ref) return;
  $("passage-title").textContent = "[" + id + "] " + (ref.title || "(untitled)");
  const meta = [ref.year, (ref.authors || []).slice(0, 3).join(", "), ref.paper_id ? "paper " + ref.paper_id : ""];
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
  $("steps-section").hidden = false;
  $("answer-section").hidden = true;
  $("copy-status").textContent = "";
  $("ask").disabled = true;
  setStatus("queued…");
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
    setStatus("running…");
    const done = await readEvents(job.id, controller.signal);
    if (done.status === "succeeded") {
      renderAnswer(done.result);
      setStatus("done");
    } else if (done.status === "cancelled") {
      setStatus("cancelled");
    } else {
      const err = done.error || {};
      setStatus("failed: " + (err.message || "unknown error") + (err.hint ? " (" + err.hint + ")" : ""), true);
    }
  } catch (err) {
    if (err.name !== "AbortError") setStatus(err.message, true);
  } finally {
    $("ask").disabled = false;
    $("cancel").hidden = true;
    current = null;
  }
}

async function cancel() {
  if (!current) return;
  await fetch("/v1/jobs/" + current.jobId, { method: "DELETE", headers: headers() });
  setStatus("cancelling…");
}

$("ask-form").addEventListener("submit", ask);
$("cancel").addEventListener("click", cancel);
$("copy-bibtex").addEventListener("click", copyBibtex);
