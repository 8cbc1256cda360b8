/* The llamabundle chat page: plain DOM, no framework, no build step.
 *
 * The server's Content-Security-Policy allows no inline code or styles, so all behaviour lives
 * here and all text from the model or the user reaches the page as text nodes (see markdown.js).
 * Chats and settings live in this browser's localStorage; the API key only in sessionStorage.
 */
"use strict";

// ---- strings: every word the page shows, in English and Simplified Chinese -------------------

const I18N = {
  en: {
    chats: "Chats", pastChats: "Past chats", newChat: "New chat", openMenu: "Open menu",
    closeMenu: "Close menu", noChats: "Your chats will appear here.",
    privacy: "Runs on this computer. Nothing leaves it.", settings: "Settings",
    temperature: "Temperature",
    temperatureHelp: "Lower is focused and predictable, higher is more creative.",
    maxTokens: "Maximum answer length (tokens)", noLimit: "No limit",
    resetDefaults: "Reset to defaults", done: "Done",
    welcome: "Ask anything. Everything stays on this computer.",
    systemPrompt: "System prompt", systemPlaceholder: "Instructions the assistant follows in this chat",
    systemHelp: "Applies to this chat from the next answer on.", systemNone: "None",
    useDefault: "Use default", regenerate: "Regenerate", retry: "Retry",
    regenerateLabel: "Regenerate the last answer", message: "Message",
    placeholder: "Message the assistant…", send: "Send", stop: "Stop",
    hint: "Enter to send · Shift+Enter for a new line",
    keyTitle: "Access key needed",
    keyMessage: "This assistant is protected. Enter the access key you were given.",
    keyLabel: "Access key", keyWrong: "That key was not accepted. Check it and try again.",
    keyEmpty: "Please enter the key.", cancel: "Cancel", continue: "Continue",
    enterKey: "Enter key", keyNeeded: "An access key is needed to chat.",
    loading: "Loading the model… This can take a moment.",
    waiting: "Loading the model… Your message will be answered when it is ready.",
    offline: "Can't reach the assistant. Is it still running?",
    busy: "The assistant is busy with another request. Try again in a moment.",
    loadFailed: "The model could not be loaded: {message}",
    failed: "Something went wrong: {message}", tooLong: "{message}",
    tooLongHint: "Start a new chat or shorten your message.",
    you: "You", assistant: "Assistant", copy: "Copy", copied: "Copied",
    copyMessage: "Copy message", rename: "Rename chat", renameInput: "Chat name",
    delete: "Delete chat", deleted: "Chat deleted.", undo: "Undo", untitled: "New chat",
    stopped: "Stopped", cutOff: "Reached the maximum length", interrupted: "Interrupted",
    storageFull: "Browser storage is full; the oldest chats were removed.",
    modelBy: "{name}", version: "llamabundle {version}",
    sources: "Sources", sourcesLabel: "Sources of this answer", cite: "Source {n}",
    tryAsking: "Try asking", notCovered: "Nothing in the documents covers this question.",
    libraryOne: "Answers from 1 document", libraryMany: "Answers from {n} documents",
    moreDocuments: "+{n} more", openDocument: "Open {title}", close: "Close",
    documentLoading: "Loading…", documentFailed: "This document could not be opened: {message}",
  },
  zh: {
    chats: "对话", pastChats: "历史对话", newChat: "新对话", openMenu: "打开菜单",
    closeMenu: "关闭菜单", noChats: "你的对话会显示在这里。",
    privacy: "在本机运行，数据不会离开这台电脑。", settings: "设置",
    temperature: "温度",
    temperatureHelp: "越低越稳定、可预测，越高越有创意。",
    maxTokens: "回答最大长度（token）", noLimit: "不限",
    resetDefaults: "恢复默认", done: "完成",
    welcome: "有什么想问的？所有内容都只保存在这台电脑上。",
    systemPrompt: "系统提示词", systemPlaceholder: "助手在本对话中遵循的指令",
    systemHelp: "从下一条回答起对本对话生效。", systemNone: "无",
    useDefault: "使用默认", regenerate: "重新生成", retry: "重试",
    regenerateLabel: "重新生成上一条回答", message: "消息",
    placeholder: "给助手发消息…", send: "发送", stop: "停止",
    hint: "Enter 发送 · Shift+Enter 换行",
    keyTitle: "需要访问密钥",
    keyMessage: "此助手受密钥保护，请输入你获得的访问密钥。",
    keyLabel: "访问密钥", keyWrong: "密钥不正确，请检查后重试。",
    keyEmpty: "请输入密钥。", cancel: "取消", continue: "继续",
    enterKey: "输入密钥", keyNeeded: "需要访问密钥才能对话。",
    loading: "正在加载模型…请稍候。",
    waiting: "正在加载模型…加载完成后会自动回答你的消息。",
    offline: "无法连接到助手。它还在运行吗？",
    busy: "助手正在处理其他请求，请稍后再试。",
    loadFailed: "模型加载失败：{message}",
    failed: "出错了：{message}", tooLong: "{message}",
    tooLongHint: "请开始新对话或缩短你的消息。",
    you: "你", assistant: "助手", copy: "复制", copied: "已复制",
    copyMessage: "复制消息", rename: "重命名对话", renameInput: "对话名称",
    delete: "删除对话", deleted: "对话已删除。", undo: "撤销", untitled: "新对话",
    stopped: "已停止", cutOff: "已达到最大长度", interrupted: "已中断",
    storageFull: "浏览器存储空间已满，已删除最早的对话。",
    modelBy: "{name}", version: "llamabundle {version}",
    sources: "来源", sourcesLabel: "这条回答的来源", cite: "来源 {n}",
    tryAsking: "可以这样问", notCovered: "文档中没有涉及这个问题的内容。",
    libraryOne: "根据 1 份文档回答", libraryMany: "根据 {n} 份文档回答",
    moreDocuments: "还有 {n} 份", openDocument: "打开 {title}", close: "关闭",
    documentLoading: "正在打开…", documentFailed: "无法打开这份文档：{message}",
  },
};

const LANG = /^zh/i.test(navigator.language || "") ? "zh" : "en";

function t(key, vars) {
  const text = I18N[LANG][key] ?? I18N.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String((vars || {})[name] ?? ""));
}

function applyI18n() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-aria]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nAria));
    if (node.classList.contains("icon-btn") || node.classList.contains("send-btn")) {
      node.title = t(node.dataset.i18nAria);
    }
  }
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
}

// ---- state and storage -----------------------------------------------------------------------

const STORE = {
  chats: "llamabundle.chats",
  settings: "llamabundle.settings",
  apiKey: "llamabundle.apiKey",
};

const state = {
  props: null,
  ready: false,
  conn: "unknown",        // unknown | loading | ready | offline | failed
  chats: [],              // saved chats
  chat: null,             // the chat on screen; a draft until its first message
  documents: null,        // a knowledge bundle's documents, once listed
  settings: {},           // only what the user changed: {temperature, max_tokens}
  gen: null,              // {controller, chat, msg, el} while an answer streams
  apiKey: "",
  afterKey: null,         // what to do once a key is entered
  readyWaiters: [],
};

const $ = (id) => document.getElementById(id);

function readJSON(storage, key, fallback) {
  try {
    const value = JSON.parse(storage.getItem(key));
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

function loadStored() {
  const chats = readJSON(localStorage, STORE.chats, []);
  state.chats = Array.isArray(chats) ? chats.filter((c) => c && c.id && Array.isArray(c.messages)) : [];
  state.settings = readJSON(localStorage, STORE.settings, {}) || {};
  try {
    state.apiKey = sessionStorage.getItem(STORE.apiKey) || "";
  } catch {
    state.apiKey = "";
  }
}

function saveChats() {
  state.chats.sort((a, b) => b.updated - a.updated);
  for (;;) {
    try {
      localStorage.setItem(STORE.chats, JSON.stringify(state.chats));
      return;
    } catch (err) {
      // Storage full: drop the oldest chats (never the one on screen) until this one fits.
      const victim = [...state.chats].reverse().find((c) => c !== state.chat);
      if (err.name !== "QuotaExceededError" || !victim) return;
      state.chats.splice(state.chats.indexOf(victim), 1);
      showToast(t("storageFull"));
    }
  }
}

let saveTimer = 0;
function saveSoon() {
  if (!saveTimer) saveTimer = setTimeout(() => { saveTimer = 0; saveChats(); }, 1000);
}

function newId() {
  return Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
}

function newDraft() {
  return { id: newId(), title: "", system: null, messages: [], created: Date.now(), updated: Date.now() };
}

function isSaved(chat) {
  return state.chats.includes(chat);
}

function defaultSystem() {
  return (state.props && state.props.system_prompt) || "";
}

// A chat's system prompt; `null` means "the bundle's default", fixed when the chat is saved.
function systemOf(chat) {
  return chat.system ?? defaultSystem();
}

function titleFrom(text) {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 60 ? line.slice(0, 57).trimEnd() + "…" : line;
}

// ---- the HTTP API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, type) {
    super(message || "HTTP " + status);
    this.status = status;
    this.type = type || "";
  }
}

function apiFetch(path, options) {
  const opts = { cache: "no-store", ...options };
  opts.headers = { ...(opts.headers || {}) };
  if (state.apiKey) opts.headers.Authorization = "Bearer " + state.apiKey;
  return fetch(path, opts);
}

async function apiError(res) {
  let message = "", type = "";
  try {
    const body = await res.json();
    message = (body.error && body.error.message) || body.message || "";
    type = (body.error && body.error.type) || "";
  } catch {
    // not JSON: keep the status only
  }
  return new ApiError(res.status, message, type);
}

async function healthStatus() {
  try {
    const res = await apiFetch("/health");  // with the key, a failed load says why
    const body = await res.json().catch(() => ({}));
    if (res.ok && body.status === "ok") return { status: "ok" };
    if (res.status === 503 || body.status === "loading") return { status: "loading" };
    return { status: "failed", message: body.message || "HTTP " + res.status };
  } catch {
    return { status: "offline" };
  }
}

let pollTimer = 0;
let connecting = false;

// Fetches /props once (behind the key, if the server has one: a 401 asks for it, then comes
// back here), then polls /health until the model is ready.
async function connect() {
  if (connecting) return;
  connecting = true;
  clearTimeout(pollTimer);
  try {
    await checkServer();
  } finally {
    connecting = false;
  }
}

async function checkServer() {
  if (!state.props) {
    try {
      const res = await apiFetch("/props");
      if (res.status === 401) {
        state.afterKey = connect;
        askForKey(Boolean(state.apiKey));
        return;
      }
      if (!res.ok) throw await apiError(res);
      applyProps(await res.json());
    } catch {
      setConn("offline");
      pollTimer = setTimeout(connect, 3000);
      return;
    }
  }
  const health = await healthStatus();
  if (health.status === "ok") {
    setConn("ready");
    return;
  }
  setConn(health.status, health.message);
  pollTimer = setTimeout(connect, health.status === "loading" ? 1000 : 3000);
}

function setConn(conn, message) {
  state.conn = conn;
  state.ready = conn === "ready";
  if (conn === "ready") {
    if (["loading", "offline", "failed"].includes(statusKind())) hideStatus();
    if (state.props && state.props.knowledge && !state.documents) listDocuments();
    for (const resolve of state.readyWaiters.splice(0)) resolve();
  } else if (conn === "loading") {
    showStatus("loading", t(state.gen ? "waiting" : "loading"));
  } else if (conn === "offline") {
    showStatus("offline", t("offline"), [[t("retry"), retry]]);
  } else {
    showStatus("failed", t("loadFailed", { message: message || "" }), [[t("retry"), retry]]);
  }
}

// Resolves once the model is ready; rejects if `signal` aborts first.
function untilReady(signal) {
  if (state.ready) return Promise.resolve();
  return new Promise((resolve, reject) => {
    state.readyWaiters.push(resolve);
    signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
  });
}

function applyProps(props) {
  state.props = props;
  const title = props.title || props.name || "Chat";
  document.title = title;
  $("title").textContent = title;
  $("welcome-title").textContent = title;
  $("model-name").textContent = props.name && props.name !== title ? props.name : "";
  $("version").textContent = props.version ? t("version", { version: props.version }) : "";
  if (props.n_ctx) $("settings-max-tokens").max = String(props.n_ctx);
  showStarters(props.starters);
  showLibrary();
  showSettings();
  showSystem();
}

// ---- settings --------------------------------------------------------------------------------

function defaults() {
  const d = (state.props && state.props.defaults) || {};
  return {
    temperature: typeof d.temperature === "number" ? d.temperature : 0.8,
    max_tokens: typeof d.max_tokens === "number" && d.max_tokens > 0 ? d.max_tokens : null,
  };
}

function effectiveSettings() {
  const d = defaults();
  return {
    temperature: state.settings.temperature ?? d.temperature,
    max_tokens: state.settings.max_tokens ?? d.max_tokens,
  };
}

function showSettings() {
  const s = effectiveSettings();
  $("settings-temperature").value = String(s.temperature);
  $("settings-temperature-range").value = String(s.temperature);
  $("settings-max-tokens").value = s.max_tokens == null ? "" : String(s.max_tokens);
  $("settings-max-tokens").placeholder = t("noLimit");
}

// What the inputs say now, validated; an empty or invalid field falls back to the default.
function readSettings() {
  const s = effectiveSettings();
  const temp = parseFloat($("settings-temperature").value);
  const max = parseInt($("settings-max-tokens").value, 10);
  const nCtx = (state.props && state.props.n_ctx) || 1 << 20;
  return {
    temperature: Number.isFinite(temp) ? Math.min(2, Math.max(0, temp)) : s.temperature,
    max_tokens: Number.isFinite(max) && max > 0 ? Math.min(max, nCtx) : s.max_tokens,
  };
}

function storeSettings() {
  const s = readSettings();
  const d = defaults();
  state.settings = {};
  if (s.temperature !== d.temperature) state.settings.temperature = s.temperature;
  if (s.max_tokens !== d.max_tokens) state.settings.max_tokens = s.max_tokens;
  try {
    localStorage.setItem(STORE.settings, JSON.stringify(state.settings));
  } catch {
    // storage unavailable: the settings still apply to this page
  }
}

function toggleSettings(open) {
  const panel = $("settings-panel");
  const show = open ?? panel.hidden;
  panel.hidden = !show;
  if (show) showSystem();
  $("settings-toggle").setAttribute("aria-expanded", String(show));
  if (show) $("settings-temperature").focus();
}

// ---- status banner and toast ----------------------------------------------------------------

let shownActions = [];

function statusKind() {
  return $("status").hidden ? "" : $("status").dataset.kind;
}

// kind: loading | offline | failed | busy | key | error. actions: [[label, handler], ...]
function showStatus(kind, text, actions) {
  const box = $("status");
  const same = (a, b) => a.length === b.length && a.every((x, i) => x[0] === b[i][0] && x[1] === b[i][1]);
  actions = actions || [];
  // Polling repeats the same state every second; redrawing it would make screen readers repeat it.
  if (!box.hidden && box.dataset.kind === kind && $("status-text").textContent === text &&
      same(actions, shownActions)) return;
  shownActions = actions;
  box.dataset.kind = kind;
  $("status-text").textContent = text;
  const slot = $("status-actions");
  slot.replaceChildren();
  for (const [label, handler] of actions) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-small";
    button.textContent = label;
    button.addEventListener("click", handler);
    slot.appendChild(button);
  }
  box.hidden = false;
}

function hideStatus() {
  const box = $("status");
  box.hidden = true;
  box.dataset.kind = "";
  $("status-text").textContent = "";
  $("status-actions").replaceChildren();
}

let toastTimer = 0;
function showToast(text, actionLabel, action) {
  const toast = $("toast");
  $("toast-text").textContent = text;
  const button = $("toast-action");
  button.hidden = !actionLabel;
  button.textContent = actionLabel || "";
  button.onclick = () => {
    toast.hidden = true;
    if (action) action();
  };
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
}

// ---- rendering messages ----------------------------------------------------------------------

const ICONS = {
  copy: ["M5 15V6a2 2 0 0 1 2-2h8", "R9 9 11 11"],
  check: ["M5 12.5l4.5 4.5L19 7.5"],
  rename: ["M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4"],
  delete: ["M5 7h14M10 7V5h4v2M7 7l1 12h8l1-12"],
};

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  for (const d of ICONS[name]) {
    let shape;
    if (d[0] === "R") {
      const [x, y, w, h] = d.slice(1).split(" ");
      shape = document.createElementNS(ns, "rect");
      for (const [k, v] of [["x", x], ["y", y], ["width", w], ["height", h], ["rx", "2"]]) shape.setAttribute(k, v);
    } else {
      shape = document.createElementNS(ns, "path");
      shape.setAttribute("d", d);
    }
    svg.appendChild(shape);
  }
  return svg;
}

const markdownOptions = { copyLabel: t("copy"), onCopy: copyText };

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  if (!button) return;
  button.classList.add("copied");
  if (button.dataset.label) button.dataset.label = t("copied");
  setTimeout(() => {
    button.classList.remove("copied");
    if (button.dataset.label) button.dataset.label = t("copy");
  }, 1500);
}

function messageElement(msg) {
  const node = document.createElement("div");
  node.className = "msg msg-" + (msg.role === "user" ? "user" : "assistant");
  const main = document.createElement("div");
  main.className = "msg-main";
  const body = document.createElement("div");
  body.className = "msg-body";
  main.appendChild(body);
  if (msg.role === "assistant") {
    const avatar = document.createElement("div");
    avatar.className = "msg-avatar";
    avatar.setAttribute("aria-hidden", "true");
    node.appendChild(avatar);
    const actions = document.createElement("div");
    actions.className = "msg-actions";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "icon-btn icon-btn-small";
    copy.setAttribute("aria-label", t("copyMessage"));
    copy.title = t("copyMessage");
    copy.append(icon("copy"), icon("check"));
    copy.addEventListener("click", () => copyText(msg.content, copy));
    const note = document.createElement("span");
    note.className = "msg-note";
    actions.append(copy, note);
    main.appendChild(actions);
  }
  node.appendChild(main);
  paintMessage(node, msg);
  return node;
}

function paintMessage(node, msg) {
  const body = node.querySelector(".msg-body");
  if (msg.role === "user") body.textContent = msg.content;
  else {
    body.replaceChildren(Markdown.render(msg.content, markdownOptions));
    if (hasSources(msg)) linkCitations(body, msg, node);
  }
  if (Array.isArray(msg.sources) && msg.role === "assistant" && !node.querySelector(".sources")) {
    // Built once: a passage the user opened stays open while the answer streams on.
    node.querySelector(".msg-main").insertBefore(sourcesElement(msg),
                                                 node.querySelector(".msg-actions"));
  }
  const note = node.querySelector(".msg-note");
  if (note) note.dataset.label = msg.note ? t(msg.note) : "";
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  for (const msg of state.chat.messages) {
    const node = messageElement(msg);
    if (state.gen && msg === state.gen.msg) {
      node.classList.add("streaming");
      state.gen.el = node;
    }
    box.appendChild(node);
  }
  $("welcome").hidden = state.chat.messages.length > 0;
  scrollToEnd();
}

function nearEnd() {
  const s = $("scroller");
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToEnd() {
  const s = $("scroller");
  s.scrollTop = s.scrollHeight;
}

let paintPending = false;
function paintSoon() {
  if (paintPending) return;
  paintPending = true;
  requestAnimationFrame(() => {
    paintPending = false;
    const gen = state.gen;
    if (!gen || !gen.el || gen.chat !== state.chat) return;
    const stick = nearEnd();
    paintMessage(gen.el, gen.msg);
    if (stick) scrollToEnd();
  });
}

// ---- sources: the passages an answer was given, under it; [n] in the answer opens one ---------

function hasSources(msg) {
  return msg.role === "assistant" && Array.isArray(msg.sources) && msg.sources.length > 0;
}

// A document's text is untrusted input, like the model's: it reaches the page as text nodes only.
// Retrieval that found nothing relevant says so, whatever the model makes of the question.
function sourcesElement(msg) {
  const box = document.createElement("section");
  box.className = "sources";
  box.setAttribute("aria-label", t("sourcesLabel"));
  if (!msg.sources.length) {
    box.classList.add("sources-none");
    box.textContent = t("notCovered");
    return box;
  }
  const head = document.createElement("h3");
  head.className = "sources-head";
  head.textContent = t("sources");
  const list = document.createElement("ol");
  list.className = "sources-list";
  for (const source of msg.sources) {
    const item = document.createElement("li");
    item.className = "source";
    item.dataset.id = String(source.id);
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    const parts = [["source-id", `[${source.id}]`], ["source-doc", source.document],
                   ["source-loc", source.location]];
    for (const [className, text] of parts) {
      if (!text) continue;
      const span = document.createElement("span");
      span.className = className;
      span.textContent = String(text);
      summary.appendChild(span);
    }
    const passage = document.createElement("p");
    passage.className = "source-text";
    passage.textContent = String(source.text || "");
    details.append(summary, passage);
    item.appendChild(details);
    list.appendChild(item);
  }
  box.append(head, list);
  return box;
}

// [1], [1, 2], [1][3] and 【1】 as the model writes them; code is left alone.
const CITATION = /[\[【](\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)[\]】]/g;

function linkCitations(root, msg, node) {
  const ids = new Set(msg.sources.map((s) => s.id));
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => (n.parentElement.closest("pre, code")
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  for (const text of texts) {
    const value = text.nodeValue;
    const out = document.createDocumentFragment();
    let last = 0;
    for (const match of value.matchAll(CITATION)) {
      const numbers = match[1].split(/\s*[,，、]\s*/).map(Number);
      if (!numbers.every((n) => ids.has(n))) continue;  // not a citation of this answer
      out.append(value.slice(last, match.index));
      for (const n of numbers) out.appendChild(citationLink(n, node));
      last = match.index + match[0].length;
    }
    if (!last) continue;
    out.append(value.slice(last));
    text.replaceWith(out);
  }
}

function citationLink(n, node) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cite";
  button.textContent = String(n);
  button.setAttribute("aria-label", t("cite", { n }));
  button.title = t("cite", { n });
  button.addEventListener("click", () => openSource(node, n));
  return button;
}

function openSource(node, n) {
  const item = node.querySelector(`.source[data-id="${n}"]`);
  if (!item) return;
  item.querySelector("details").open = true;
  item.classList.remove("flash");
  void item.offsetWidth;  // restart the highlight when the same source is cited again
  item.classList.add("flash");
  item.scrollIntoView({ block: "nearest", behavior: "smooth" });
  item.querySelector("summary").focus({ preventScroll: true });
}

// ---- starters: example questions for a first-time user ---------------------------------------

function showStarters(starters) {
  const list = $("starters");
  list.replaceChildren();
  for (const text of Array.isArray(starters) ? starters.slice(0, 6) : []) {
    if (typeof text !== "string" || !text.trim()) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "starter";
    button.textContent = text;
    button.addEventListener("click", () => ask(text));
    const item = document.createElement("li");
    item.appendChild(button);
    list.appendChild(item);
  }
  $("starters-box").hidden = list.children.length === 0;
}

function ask(text) {
  if (state.gen) return;
  $("input").value = text;
  send();
}

// ---- the documents: what a knowledge bundle answers from, each opening its text --------------

const SHOWN_TITLES = 6;

async function listDocuments() {
  try {
    const res = await apiFetch("/knowledge/documents");
    if (!res.ok) return;  // an older server, or a key still to enter: the count still shows
    const body = await res.json();
    if (Array.isArray(body.documents)) state.documents = body.documents;
  } catch {
    return;
  }
  showLibrary();
}

// "Answers from 5 documents" (the count from /props at once, the titles once listed).
function showLibrary(all) {
  const k = state.props && state.props.knowledge;
  const count = k && Number(k.documents);
  $("library").hidden = !count;
  $("welcome-text").hidden = Boolean(count);
  if (!count) return;
  $("library-line").textContent = count === 1 ? t("libraryOne") : t("libraryMany", { n: count });
  const list = $("library-list");
  list.replaceChildren();
  const docs = state.documents || [];
  const shown = all ? docs : docs.slice(0, SHOWN_TITLES);
  for (const doc of shown) {
    const title = String(doc.title || doc.document || "");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "doc-chip";
    button.textContent = title;  // a document's title is untrusted text, like its passages
    button.title = String(doc.document || title);
    button.setAttribute("aria-label", t("openDocument", { title }));
    button.addEventListener("click", () => openDocument(doc));
    const item = document.createElement("li");
    item.appendChild(button);
    list.appendChild(item);
  }
  if (shown.length < docs.length) {
    const more = document.createElement("button");
    more.type = "button";
    more.className = "doc-chip doc-more";
    more.textContent = t("moreDocuments", { n: docs.length - shown.length });
    more.addEventListener("click", () => {
      showLibrary(true);
      const chips = $("library-list").querySelectorAll(".doc-chip");
      if (chips[shown.length]) chips[shown.length].focus();
    });
    const item = document.createElement("li");
    item.appendChild(more);
    list.appendChild(item);
  }
}

async function openDocument(doc) {
  const dialog = $("document-dialog");
  const body = $("document-body");
  $("document-title").textContent = String(doc.title || doc.document || "");
  $("document-path").textContent = String(doc.document || "");
  body.replaceChildren(paragraph(t("documentLoading")));
  if (!dialog.open) dialog.showModal();
  $("document-close").focus();
  try {
    const res = await apiFetch("/knowledge/documents/" + encodeURIComponent(doc.id));
    if (!res.ok) throw await apiError(res);
    const passages = (await res.json()).passages || [];
    body.replaceChildren();
    let place = null;
    for (const p of passages) {
      // Passages of one section share its heading path: say it once, above the first.
      if (p.location && p.location !== place) {
        const head = document.createElement("h3");
        head.textContent = String(p.location);
        body.appendChild(head);
      }
      place = p.location;
      body.appendChild(paragraph(String(p.text || "")));
    }
    body.scrollTop = 0;
  } catch (err) {
    body.replaceChildren(paragraph(t("documentFailed", { message: sentence(err.message) })));
  }
}

function paragraph(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

// ---- system prompt ---------------------------------------------------------------------------

// The chat's system prompt lives in the settings panel: a first-time user sees the documents
// and the questions, not the machinery; the bundle's baked prompt applies all the same.
function showSystem() {
  if (!state.chat) return;
  const text = systemOf(state.chat);
  const area = $("system-prompt");
  if (document.activeElement !== area) area.value = text;
  $("system-reset").hidden = text === defaultSystem();
  if (!$("settings-panel").hidden) autosize(area, 240);
}

function editSystem() {
  state.chat.system = $("system-prompt").value;
  if (isSaved(state.chat)) saveSoon();
  $("system-reset").hidden = state.chat.system === defaultSystem();
  autosize($("system-prompt"), 240);
}

// ---- chats: list, switch, new, rename, delete ------------------------------------------------

function renderChatList() {
  const list = $("chat-list");
  list.replaceChildren();
  for (const chat of state.chats) {
    const item = document.createElement("li");
    item.className = "chat-item" + (chat === state.chat ? " active" : "");
    item.dataset.id = chat.id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "chat-open";
    open.textContent = chat.title || t("untitled");
    open.title = chat.title || t("untitled");
    if (chat === state.chat) open.setAttribute("aria-current", "page");
    open.addEventListener("click", () => openChat(chat));
    item.appendChild(open);
    item.appendChild(chatButton("rename", t("rename"), () => startRename(item, chat)));
    item.appendChild(chatButton("delete", t("delete"), () => deleteChat(chat)));
    list.appendChild(item);
  }
  $("chat-list-empty").hidden = state.chats.length > 0;
}

function chatButton(kind, label, handler) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "icon-btn icon-btn-small chat-" + kind;
  button.setAttribute("aria-label", label);
  button.title = label;
  button.appendChild(icon(kind));
  button.addEventListener("click", handler);
  return button;
}

function startRename(item, chat) {
  const input = document.createElement("input");
  input.type = "text";
  input.className = "chat-rename-input";
  input.value = chat.title || "";
  input.setAttribute("aria-label", t("renameInput"));
  let finished = false;
  const finish = (keep) => {
    if (finished) return;
    finished = true;
    const title = input.value.trim();
    if (keep && title) {
      chat.title = title;
      saveChats();
    }
    renderChatList();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing && e.keyCode !== 229) finish(true);
    else if (e.key === "Escape") {
      e.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
  item.replaceChildren(input);
  input.focus();
  input.select();
}

function deleteChat(chat) {
  const index = state.chats.indexOf(chat);
  if (index === -1) return;
  if (state.gen && state.gen.chat === chat) stop();
  state.chats.splice(index, 1);
  saveChats();
  if (chat === state.chat) openChat(state.chats[0] || newDraft(), { keepSidebar: true });
  else renderChatList();
  showToast(t("deleted"), t("undo"), () => {
    state.chats.push(chat);
    saveChats();
    openChat(chat);
  });
}

function openChat(chat, opts) {
  if (state.gen && state.gen.chat !== chat) stop();
  state.chat = chat;
  if (["busy", "error"].includes(statusKind())) hideStatus();  // they were about the other chat
  renderMessages();
  renderChatList();
  showSystem();
  updateControls();
  if (!(opts && opts.keepSidebar)) toggleSidebar(false);
  $("input").focus();
}

function newChat() {
  if (state.chat && state.chat.messages.length === 0 && !isSaved(state.chat)) {
    showSystem();
    toggleSidebar(false);
    $("input").focus();
    return;
  }
  openChat(newDraft());
}

// ---- sending and streaming -------------------------------------------------------------------

function send() {
  const input = $("input");
  const text = input.value.trim();
  if (!text || state.gen) return;
  const chat = state.chat;
  chat.system = systemOf(chat);
  chat.messages.push({ role: "user", content: text });
  if (!chat.title) chat.title = titleFrom(text);
  chat.updated = Date.now();
  if (!isSaved(chat)) state.chats.unshift(chat);
  saveChats();
  input.value = "";
  autosize(input, 200);
  showSystem();
  renderChatList();
  $("messages").appendChild(messageElement(chat.messages[chat.messages.length - 1]));
  $("welcome").hidden = true;
  scrollToEnd();
  generate();
  input.focus();
}

// Replaces the last answer (or answers a user message left unanswered by an error).
function regenerate() {
  const chat = state.chat;
  if (state.gen || !chat.messages.length) return;
  if (chat.messages[chat.messages.length - 1].role === "assistant") chat.messages.pop();
  if (!chat.messages.length) return;
  saveChats();
  renderMessages();
  generate();
  $("input").focus();
}

function requestBody(chat, upTo) {
  const messages = [];
  const system = systemOf(chat).trim();
  if (system) messages.push({ role: "system", content: system });
  for (const m of chat.messages.slice(0, upTo)) messages.push({ role: m.role, content: m.content });
  const s = readSettings();
  const body = { model: (state.props && state.props.model) || "", messages, stream: true,
                 temperature: s.temperature };
  if (s.max_tokens != null) body.max_tokens = s.max_tokens;
  return body;
}

async function generate() {
  const chat = state.chat;
  const upTo = chat.messages.length;
  const msg = { role: "assistant", content: "" };
  chat.messages.push(msg);
  const controller = new AbortController();
  const gen = (state.gen = { controller, chat, msg, el: messageElement(msg) });
  gen.el.classList.add("streaming");
  $("messages").appendChild(gen.el);
  $("welcome").hidden = true;
  scrollToEnd();
  setStreaming(true);
  if (["busy", "error"].includes(statusKind())) hideStatus();
  let outcome = "done";
  try {
    const res = await postChat(requestBody(chat, upTo), controller.signal);
    outcome = await readStream(res.body, (text) => {
      msg.content += text;
      chat.updated = Date.now();
      paintSoon();
      saveSoon();
    }, (sources) => {
      msg.sources = sources;
      paintSoon();
    });
  } catch (err) {
    outcome = controller.signal.aborted ? "stopped" : "failed";
    if (outcome === "failed") reportError(err);
  } finally {
    finishGeneration(gen, outcome);
  }
}

// POSTs the chat, waiting for the model first if it is still loading.
async function postChat(body, signal) {
  for (;;) {
    if (state.conn === "unknown" || state.conn === "loading") {
      if (state.conn === "loading") showStatus("loading", t("waiting"));
      await untilReady(signal);
    }
    const res = await apiFetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal,
    });
    if (res.ok) return res;
    const err = await apiError(res);
    if (res.status === 503 && (await healthStatus()).status === "loading") {
      setConn("loading");
      connect();
      continue;
    }
    throw err;
  }
}

// Reads an OpenAI SSE stream; returns "done", "cutOff" (max_tokens hit) or "interrupted".
// A knowledge bundle's first chunk carries the answer's sources.
async function readStream(stream, onText, onSources) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "", finish = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) !== -1) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") return finish === "length" ? "cutOff" : "done";
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        continue;
      }
      if (chunk.error) throw new ApiError(500, chunk.error.message, chunk.error.type);
      if (Array.isArray(chunk.sources) && onSources) onSources(chunk.sources);
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) continue;
      if (choice.delta && typeof choice.delta.content === "string" && choice.delta.content) {
        onText(choice.delta.content);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  if (finish) return finish === "length" ? "cutOff" : "done";
  return "interrupted";
}

function finishGeneration(gen, outcome) {
  const { chat, msg } = gen;
  if (state.gen === gen) state.gen = null;
  const index = chat.messages.indexOf(msg);
  if (!msg.content.trim() && outcome !== "done" && index !== -1) chat.messages.splice(index, 1);
  else if (outcome !== "done" && outcome !== "failed") msg.note = outcome;
  else if (outcome === "failed") msg.note = "interrupted";
  clearTimeout(saveTimer);
  saveTimer = 0;
  if (isSaved(chat)) saveChats();
  setStreaming(false);
  if (gen.el && chat === state.chat) {
    gen.el.classList.remove("streaming");
    if (chat.messages.includes(msg)) paintMessage(gen.el, msg);
    else gen.el.remove();
    $("welcome").hidden = chat.messages.length > 0;
  }
  updateControls();
  if (!$("api-key-dialog").open) $("input").focus();
}

function stop() {
  if (state.gen) state.gen.controller.abort();
}

function reportError(err) {
  if (!(err instanceof ApiError)) {
    // fetch rejects with a TypeError when the server cannot be reached at all
    setConn("offline");
    clearTimeout(pollTimer);
    pollTimer = setTimeout(connect, 3000);
    return;
  }
  if (err.status === 401) {
    state.afterKey = retry;
    askForKey(Boolean(state.apiKey));
  } else if (err.status === 503) {
    showStatus("busy", t("busy"), [[t("retry"), retry]]);
  } else if (err.status === 400 || err.status === 413 || err.status === 422) {
    showStatus("error", t("tooLong", { message: sentence(err.message) }) + " " + t("tooLongHint"),
               [[t("newChat"), newChat], [t("retry"), retry]]);
  } else {
    showStatus("error", t("failed", { message: sentence(err.message) }), [[t("retry"), retry]]);
  }
}

// Server messages are lower-case fragments ("the prompt is too long"); show them as sentences.
function sentence(text) {
  const s = String(text || "").trim();
  if (!s) return s;
  return s[0].toUpperCase() + s.slice(1) + (/[.!?。！？]$/.test(s) ? "" : ".");
}

// Reconnects, and answers the last message if an error left it unanswered.
function retry() {
  hideStatus();
  if (state.conn !== "ready") connect();
  const last = state.chat.messages[state.chat.messages.length - 1];
  if (last && last.role === "user" && !state.gen) generate();
}

// ---- controls --------------------------------------------------------------------------------

function setStreaming(on) {
  document.body.dataset.state = on ? "streaming" : "idle";
  $("messages").setAttribute("aria-busy", String(on));
  updateControls();
}

function updateControls() {
  const streaming = Boolean(state.gen);
  $("send").hidden = streaming;
  $("send").disabled = false;
  $("stop").hidden = !streaming;
  const last = state.chat && state.chat.messages[state.chat.messages.length - 1];
  const canRegenerate = !streaming && Boolean(last);
  $("regenerate").hidden = !canRegenerate;
  const retrying = last && last.role === "user";
  $("regenerate").querySelector("span").textContent = t(retrying ? "retry" : "regenerate");
  $("regenerate").setAttribute("aria-label", retrying ? t("retry") : t("regenerateLabel"));
}

function autosize(area, max) {
  area.style.height = "auto";
  area.style.height = Math.min(area.scrollHeight + 2, max) + "px";
}

function toggleSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  $("scrim").hidden = !open;
  $("menu").setAttribute("aria-expanded", String(open));
  if (open) $("new-chat").focus();
}

// ---- API key dialog --------------------------------------------------------------------------

function askForKey(wrong) {
  const dialog = $("api-key-dialog");
  const error = $("api-key-error");
  error.hidden = !wrong;
  error.textContent = wrong ? t("keyWrong") : "";
  $("api-key-input").value = "";
  showStatus("key", t("keyNeeded"), [[t("enterKey"), () => askForKey(false)]]);
  if (!dialog.open) dialog.showModal();
  $("api-key-input").focus();
}

async function submitKey() {
  const key = $("api-key-input").value.trim();
  const error = $("api-key-error");
  if (!key) {
    error.textContent = t("keyEmpty");
    error.hidden = false;
    return;
  }
  try {
    const res = await fetch("/v1/models", { cache: "no-store", headers: { Authorization: "Bearer " + key } });
    if (res.status === 401) {
      error.textContent = t("keyWrong");
      error.hidden = false;
      $("api-key-input").select();
      return;
    }
  } catch {
    // cannot check it now: take the key; a later request will say if it is wrong
  }
  state.apiKey = key;
  try {
    sessionStorage.setItem(STORE.apiKey, key);
  } catch {
    // keep it for this page only
  }
  $("api-key-dialog").close();
  if (statusKind() === "key") hideStatus();
  if (state.ready && state.props && state.props.knowledge && !state.documents) listDocuments();
  const next = state.afterKey;
  state.afterKey = null;
  $("input").focus();
  if (next) next();
}

// ---- events ----------------------------------------------------------------------------------

function bindEvents() {
  const input = $("input");
  let composing = false;
  input.addEventListener("compositionstart", () => { composing = true; });
  input.addEventListener("compositionend", () => { composing = false; });
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.shiftKey) return;
    // An input method uses Enter to pick its candidate: that Enter must never send.
    if (e.isComposing || composing || e.keyCode === 229) return;
    e.preventDefault();
    send();
  });
  input.addEventListener("input", () => autosize(input, 200));
  $("send").addEventListener("click", send);
  $("stop").addEventListener("click", stop);
  $("regenerate").addEventListener("click", regenerate);
  $("new-chat").addEventListener("click", newChat);
  $("topbar-new").addEventListener("click", newChat);
  $("menu").addEventListener("click", () => toggleSidebar(true));
  $("sidebar-close").addEventListener("click", () => {
    toggleSidebar(false);
    $("menu").focus();
  });
  $("scrim").addEventListener("click", () => toggleSidebar(false));

  $("system-prompt").addEventListener("input", editSystem);
  $("system-reset").addEventListener("click", () => {
    state.chat.system = null;
    if (isSaved(state.chat)) {
      state.chat.system = defaultSystem();
      saveChats();
    }
    $("system-prompt").value = defaultSystem();
    showSystem();
  });

  $("settings-toggle").addEventListener("click", () => toggleSettings());
  $("settings-close").addEventListener("click", () => {
    toggleSettings(false);
    $("settings-toggle").focus();
  });
  $("settings-reset").addEventListener("click", () => {
    state.settings = {};
    storeSettings();
    showSettings();
  });
  const temp = $("settings-temperature"), range = $("settings-temperature-range");
  range.addEventListener("input", () => { temp.value = range.value; storeSettings(); });
  temp.addEventListener("input", () => {
    if (temp.value !== "" && Number.isFinite(parseFloat(temp.value))) range.value = temp.value;
    storeSettings();
  });
  // An emptied field means "the default"; it is not refilled while being edited.
  temp.addEventListener("change", storeSettings);
  $("settings-max-tokens").addEventListener("input", storeSettings);
  $("settings-max-tokens").addEventListener("change", storeSettings);

  $("api-key-submit").addEventListener("click", submitKey);
  $("api-key-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitKey();
    }
  });
  $("api-key-cancel").addEventListener("click", () => $("api-key-dialog").close());
  $("document-close").addEventListener("click", () => $("document-dialog").close());
  // A click on the backdrop (outside the dialog's box) closes it too.
  $("document-dialog").addEventListener("click", (e) => {
    if (e.target === $("document-dialog")) $("document-dialog").close();
  });
  // Chromium can restore focus to the input without routing keys to it; focus it afresh.
  $("api-key-dialog").addEventListener("close", () => setTimeout(() => {
    $("input").blur();
    $("input").focus();
  }));

  document.addEventListener("keydown", (e) => {
    // A dialog closes itself on Escape; that Escape must not also stop an answer.
    if (e.key !== "Escape" || document.querySelector("dialog[open]")) return;
    if (!$("settings-panel").hidden) toggleSettings(false);
    else if (document.body.classList.contains("sidebar-open")) toggleSidebar(false);
    else if (state.gen) stop();
  });
  window.addEventListener("storage", (e) => {
    if (e.key !== STORE.chats || state.gen) return;
    loadStored();
    const same = state.chats.find((c) => state.chat && c.id === state.chat.id);
    if (same) state.chat = same;
    renderChatList();
  });
}

function init() {
  applyI18n();
  loadStored();
  bindEvents();
  openChat(newDraft());  // a page load starts a fresh chat; past ones wait in the sidebar
  showSettings();
  setStreaming(false);
  $("input").focus();
  connect();
}

init();
