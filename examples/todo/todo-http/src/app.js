// The todo page: add, mark done, delete, filter, and a table that refreshes every 3 s.
// Every value from the server goes into the page as text (textContent), never as HTML.
"use strict";

const REFRESH_MS = 3000;
const state = { status: "all", list: "", tag: "", q: "" };
let timer = null;

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  if (message) {
    box.textContent = message;
    box.hidden = false;
  } else {
    box.textContent = "";
    box.hidden = true;
  }
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = { error: text }; }
  }
  if (!res.ok) {
    const why = data && data.error ? data.error : res.statusText;
    throw new Error(`${res.status}: ${why}`);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (!isFinite(s)) return iso;
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return iso.slice(0, 10);
}

function row(todo) {
  const done = el("input", { type: "checkbox", checked: todo.done, class: "done", title: "Mark done" });
  done.addEventListener("change", () => act(() => api("PATCH", `/api/todos/${todo.id}`, { done: done.checked })));
  const del = el("button", { type: "button", class: "delete", title: "Delete", textContent: "\u00d7" });
  del.addEventListener("click", () => act(() => api("DELETE", `/api/todos/${todo.id}`)));
  const tags = el("td", { class: "tags" });
  for (const t of todo.tags) {
    const chip = el("button", { type: "button", class: "tag", textContent: t, title: `Show #${t}` });
    chip.addEventListener("click", () => { $("filter-tag").value = t; state.tag = t; refresh(); });
    tags.append(chip);
  }
  const tr = el("tr", { "data-id": String(todo.id), class: todo.done ? "is-done" : "" },
    el("td", { class: "c-done" }, done),
    el("td", { class: "title", textContent: todo.title }),
    el("td", { class: "list", textContent: todo.list }),
    tags,
    el("td", { class: "added", textContent: ago(todo.createdAt), title: todo.createdAt }),
    el("td", { class: "c-del" }, del));
  return tr;
}

function query() {
  const p = new URLSearchParams();
  if (state.status !== "all") p.set("status", state.status);
  if (state.list) p.set("list", state.list);
  if (state.tag) p.set("tag", state.tag);
  if (state.q) p.set("q", state.q);
  const s = p.toString();
  return s ? `?${s}` : "";
}

async function refreshLists() {
  const lists = await api("GET", "/api/lists");
  const select = $("filter-list");
  const keep = select.value;
  select.replaceChildren(el("option", { value: "", textContent: "All lists" }));
  const known = $("known-lists");
  known.replaceChildren();
  for (const l of lists) {
    select.append(el("option", { value: l.name, textContent: `${l.name} (${l.open}/${l.total})` }));
    known.append(el("option", { value: l.name }));
  }
  if (keep && !lists.some((l) => l.name === keep)) {
    select.append(el("option", { value: keep, textContent: `${keep} (0/0)` }));
  }
  select.value = keep;
}

async function refreshPool() {
  const s = await api("GET", "/api/stats");
  $("pool").textContent = `pool: ${s.open} of ${s.max} connections open, ${s.idle} idle (${s.mode})`;
}

async function refresh() {
  clearTimeout(timer);
  try {
    const todos = await api("GET", `/api/todos${query()}`);
    $("todos").tBodies[0].replaceChildren(...todos.map(row));
    $("empty").hidden = todos.length > 0;
    const open = todos.filter((t) => !t.done).length;
    $("updated").textContent =
      `${todos.length} shown, ${open} open \u00b7 live, every ${REFRESH_MS / 1000} s \u00b7 updated ${new Date().toLocaleTimeString()}`;
    await refreshLists();
    await refreshPool();
    if (!$("error").dataset.sticky) showError("");
  } catch (e) {
    showError(e.message);
  } finally {
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

async function act(fn) {
  delete $("error").dataset.sticky;
  try {
    await fn();
    showError("");
  } catch (e) {
    $("error").dataset.sticky = "1";
    showError(e.message);
  }
  await refresh();
}

function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

document.addEventListener("DOMContentLoaded", () => {
  $("add-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const title = $("new-title").value;
    const list = $("new-list").value;
    const tags = $("new-tags").value.split(/[\s,]+/).filter(Boolean);
    act(async () => {
      await api("POST", "/api/todos", { title, list, tags });
      $("new-title").value = "";
      $("new-tags").value = "";
      $("new-title").focus();
    });
  });
  for (const b of document.querySelectorAll(".status button")) {
    b.addEventListener("click", () => {
      state.status = b.dataset.status;
      for (const o of document.querySelectorAll(".status button")) o.classList.toggle("on", o === b);
      refresh();
    });
  }
  $("filter-list").addEventListener("change", (ev) => { state.list = ev.target.value; refresh(); });
  const onTag = debounce(() => { state.tag = $("filter-tag").value.trim().toLowerCase(); refresh(); }, 250);
  const onSearch = debounce(() => { state.q = $("filter-search").value.trim(); refresh(); }, 250);
  $("filter-tag").addEventListener("input", onTag);
  $("filter-search").addEventListener("input", onSearch);
  refresh();
});
