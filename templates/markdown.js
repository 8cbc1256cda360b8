/* Markdown to DOM, written by hand for model answers.
 *
 * Nothing here uses innerHTML: every character of the source reaches the page through
 * createTextNode or a property such as href, so an answer like <img src=x onerror=...> is shown
 * as those literal characters and never becomes an element. Links are made only for http(s) and
 * mailto URLs. Unfinished syntax (an answer still streaming) simply shows as text.
 *
 * Markdown.render(text, {copyLabel, onCopy}) returns a DocumentFragment.
 */
"use strict";

window.Markdown = (function () {
  const SAFE_URL = /^(https?:\/\/|mailto:)/i;
  const FENCE_OPEN = /^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$/;
  const FENCE_CLOSE = /^[ \t]{0,3}(`{3,}|~{3,})[ \t]*$/;
  const HEADING = /^[ \t]{0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
  const RULE = /^[ \t]{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const QUOTE = /^[ \t]{0,3}>[ ]?(.*)$/;
  const ITEM = /^([ \t]*)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*)|$)/;
  const TABLE_RULE = /^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
  const ESCAPABLE = /[\\`*_{}[\]()#+\-.!|~<>]/;
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  function indentOf(line) {
    let n = 0;
    for (const c of line) {
      if (c === " ") n += 1;
      else if (c === "\t") n += 4 - (n % 4);
      else break;
    }
    return n;
  }

  // Removes up to `cols` columns of leading whitespace.
  function dedent(line, cols) {
    let n = 0, i = 0;
    while (i < line.length && n < cols && (line[i] === " " || line[i] === "\t")) {
      n += line[i] === "\t" ? 4 - (n % 4) : 1;
      i += 1;
    }
    return line.slice(i);
  }

  function startsBlock(line) {
    return FENCE_OPEN.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line);
  }

  function isTableStart(lines, i) {
    return i + 1 < lines.length && lines[i].includes("|") && lines[i + 1].includes("|") &&
      TABLE_RULE.test(lines[i + 1]);
  }

  // ---- blocks -------------------------------------------------------------------------

  function blocks(lines, parent, opts) {
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (!line.trim()) i += 1;
      else if ((m = FENCE_OPEN.exec(line))) i = codeBlock(lines, i, m, parent, opts);
      else if ((m = HEADING.exec(line))) {
        const h = el("h" + Math.min(6, m[1].length + 2), "md-h" + m[1].length);
        inline(m[2], h);
        parent.appendChild(h);
        i += 1;
      } else if (RULE.test(line)) {
        parent.appendChild(el("hr"));
        i += 1;
      } else if (QUOTE.test(line)) i = quote(lines, i, parent, opts);
      else if (ITEM.test(line)) i = list(lines, i, parent, opts);
      else if (isTableStart(lines, i)) i = table(lines, i, parent);
      else i = paragraph(lines, i, parent);
    }
  }

  function codeBlock(lines, i, m, parent, opts) {
    const fence = m[1];
    const indent = indentOf(lines[i]);
    const body = [];
    for (i += 1; i < lines.length; i += 1) {
      const close = FENCE_CLOSE.exec(lines[i]);
      if (close && close[1][0] === fence[0] && close[1].length >= fence.length) {
        i += 1;
        break;
      }
      body.push(dedent(lines[i], indent));
    }
    parent.appendChild(codeNode(body.join("\n"), m[2], opts));
    return i;
  }

  function codeNode(text, lang, opts) {
    const box = el("div", "code");
    const head = el("div", "code-head");
    const label = el("span", "code-lang");
    // Labels are drawn by CSS from data-label so a message's text stays exactly the model's.
    label.dataset.label = lang || "";
    const copy = el("button", "code-copy");
    copy.type = "button";
    copy.setAttribute("aria-label", opts.copyLabel || "Copy");
    copy.dataset.label = opts.copyLabel || "Copy";
    copy.appendChild(copyIcon());
    copy.addEventListener("click", () => opts.onCopy && opts.onCopy(text, copy));
    head.append(label, copy);
    const pre = el("pre");
    const code = el("code");
    code.textContent = text;
    pre.appendChild(code);
    box.append(head, pre);
    return box;
  }

  function copyIcon() {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const rect = document.createElementNS(SVG, "rect");
    for (const [k, v] of [["x", "9"], ["y", "9"], ["width", "11"], ["height", "11"], ["rx", "2"]]) {
      rect.setAttribute(k, v);
    }
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", "M5 15V6a2 2 0 0 1 2-2h8");
    svg.append(rect, path);
    return svg;
  }

  function quote(lines, i, parent, opts) {
    const inner = [];
    for (; i < lines.length; i += 1) {
      const m = QUOTE.exec(lines[i]);
      if (m) inner.push(m[1]);
      else if (lines[i].trim() && inner.length && inner[inner.length - 1].trim() &&
               !startsBlock(lines[i]) && !ITEM.test(lines[i])) inner.push(lines[i]);
      else break;
    }
    const bq = el("blockquote");
    blocks(inner, bq, opts);
    parent.appendChild(bq);
    return i;
  }

  function list(lines, i, parent, opts) {
    const first = ITEM.exec(lines[i]);
    const base = indentOf(first[1]);
    const ordered = /\d/.test(first[2]);
    const node = el(ordered ? "ol" : "ul");
    if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
    let loose = false;
    while (i < lines.length) {
      const m = ITEM.exec(lines[i]);
      if (!m || indentOf(m[1]) > base + 1 || /\d/.test(m[2]) !== ordered || RULE.test(lines[i])) break;
      const content = base + m[2].length + 1;
      const item = [m[3] || ""];
      let j = i + 1;
      while (j < lines.length) {
        const line = lines[j];
        if (!line.trim()) {
          let k = j + 1;
          while (k < lines.length && !lines[k].trim()) k += 1;
          if (k < lines.length && indentOf(lines[k]) >= base + 2) {
            loose = true;
            for (; j < k; j += 1) item.push("");
            continue;
          }
          break;
        }
        if (indentOf(line) >= base + 2) item.push(dedent(line, content));
        else if (ITEM.test(line) || startsBlock(line)) break;
        else item.push(line.trim());  // a lazy continuation line
        j += 1;
      }
      const li = el("li");
      blocks(item, li, opts);
      node.appendChild(li);
      i = j;
      // A blank line between items keeps the list going but makes it "loose" (spaced).
      let k = i;
      while (k < lines.length && !lines[k].trim()) k += 1;
      if (k > i && k < lines.length) {
        const next = ITEM.exec(lines[k]);
        if (next && indentOf(next[1]) <= base + 1 && /\d/.test(next[2]) === ordered) {
          loose = true;
          i = k;
        }
      }
    }
    if (!loose) {
      for (const li of node.children) {
        for (const p of Array.from(li.children)) if (p.tagName === "P") p.replaceWith(...p.childNodes);
      }
    }
    parent.appendChild(node);
    return i;
  }

  function splitRow(line) {
    let s = line.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
    return s.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
  }

  function table(lines, i, parent) {
    const head = splitRow(lines[i]);
    const aligns = splitRow(lines[i + 1]).map((c) =>
      c.startsWith(":") && c.endsWith(":") ? "al-center" : c.endsWith(":") ? "al-right" : "");
    const tbl = el("table");
    const row = (cells, tag) => {
      const tr = el("tr");
      head.forEach((_, n) => {
        const cell = el(tag, aligns[n] || "");
        inline(cells[n] || "", cell);
        tr.appendChild(cell);
      });
      return tr;
    };
    const thead = el("thead");
    thead.appendChild(row(head, "th"));
    const tbody = el("tbody");
    for (i += 2; i < lines.length && lines[i].trim() && lines[i].includes("|"); i += 1) {
      tbody.appendChild(row(splitRow(lines[i]), "td"));
    }
    tbl.append(thead, tbody);
    const wrap = el("div", "table-wrap");
    wrap.appendChild(tbl);
    parent.appendChild(wrap);
    return i;
  }

  function paragraph(lines, i, parent) {
    const text = [lines[i].trim()];
    for (i += 1; i < lines.length; i += 1) {
      const line = lines[i];
      if (!line.trim() || startsBlock(line) || ITEM.test(line) || isTableStart(lines, i)) break;
      text.push(line.trim());
    }
    const p = el("p");
    inline(text.join("\n"), p);
    parent.appendChild(p);
    return i;
  }

  // ---- inline -------------------------------------------------------------------------

  const isSpace = (c) => c === undefined || /\s/.test(c);
  const isWord = (c) => c !== undefined && /[\p{L}\p{N}_]/u.test(c);

  // The index of the next run of exactly `run` backticks at or after `from`, or -1.
  function findTicks(text, from, run) {
    let j = from;
    while ((j = text.indexOf(run, j)) !== -1) {
      if (text[j + run.length] !== "`") return j;
      while (text[j] === "`") j += 1;
    }
    return -1;
  }

  // The index of the closing delimiter of an emphasis opened at `from`, or -1.
  function findClose(text, from, delim) {
    for (let j = from; j < text.length; j += 1) {
      if (text[j] === "\\") { j += 1; continue; }
      if (text[j] === "`") {  // skip code spans: their content is never emphasis
        const run = /^`+/.exec(text.slice(j))[0];
        const end = findTicks(text, j + run.length, run);
        if (end !== -1) { j = end + run.length - 1; continue; }
      }
      if (!text.startsWith(delim, j)) continue;
      if (delim.length === 1 && text[j + 1] === delim) {  // an inner "**": not our closer
        while (text[j + 1] === delim) j += 1;
        continue;
      }
      if (isSpace(text[j - 1])) continue;
      while (delim.length === 2 && text[j + 2] === delim[0]) j += 1;  // "***": close on the last two
      if (delim[0] === "_" && isWord(text[j + delim.length])) continue;
      if (j > from) return j;
    }
    return -1;
  }

  // Parses [label](url "title") at i; returns {label, url, end} or null.
  function parseLink(text, i) {
    let depth = 0, j = i;
    for (; j < text.length; j += 1) {
      if (text[j] === "\\") j += 1;
      else if (text[j] === "[") depth += 1;
      else if (text[j] === "]" && --depth === 0) break;
    }
    if (j >= text.length || text[j + 1] !== "(") return null;
    let k = j + 2, parens = 0;
    for (; k < text.length; k += 1) {
      if (text[k] === "(") parens += 1;
      else if (text[k] === ")" && parens-- === 0) break;
      else if (text[k] === "\n") return null;
    }
    if (k >= text.length) return null;
    const target = text.slice(j + 2, k).trim().match(/^<?([^\s>]*)>?(?:\s+["'(](.*)["')])?$/);
    if (!target) return null;
    return { label: text.slice(i + 1, j), url: target[1], title: target[2], end: k + 1 };
  }

  function link(url, title) {
    const a = el("a");
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    if (title) a.title = title;
    return a;
  }

  function inline(text, parent) {
    let buf = "";
    const flush = () => {
      if (buf) parent.appendChild(document.createTextNode(buf));
      buf = "";
    };
    const wrap = (tag, inner) => {
      flush();
      const node = el(tag);
      inline(inner, node);
      parent.appendChild(node);
    };
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      const rest = text.slice(i, i + 8);
      let m;
      if (c === "\\" && ESCAPABLE.test(text[i + 1] || "")) {
        buf += text[i + 1];
        i += 2;
      } else if (c === "\n") {
        flush();
        parent.appendChild(el("br"));
        i += 1;
      } else if (c === "`") {
        const run = /^`+/.exec(text.slice(i))[0];
        const end = findTicks(text, i + run.length, run);
        if (end === -1) {
          buf += run;
          i += run.length;
          continue;
        }
        let code = text.slice(i + run.length, end).replace(/\n/g, " ");
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        flush();
        const node = el("code");
        node.textContent = code;
        parent.appendChild(node);
        i = end + run.length;
      } else if (c === "[" && (m = parseLink(text, i))) {
        if (SAFE_URL.test(m.url)) {
          flush();
          const a = link(m.url, m.title);
          inline(m.label, a);
          parent.appendChild(a);
        } else {
          buf += text.slice(i, m.end);  // not a URL we open: keep the source as plain text
        }
        i = m.end;
      } else if (c === "<" && (m = /^<((?:https?:\/\/|mailto:)[^\s<>]+)>/i.exec(text.slice(i)))) {
        flush();
        const a = link(m[1]);
        a.textContent = m[1];
        parent.appendChild(a);
        i += m[0].length;
      } else if ((c === "h" || c === "H") && /^https?:\/\//i.test(rest) && !isWord(text[i - 1]) &&
                 (m = /^https?:\/\/[^\s<>"'`]+/i.exec(text.slice(i)))) {
        const url = m[0].replace(/[.,:;!?*_~)\]}]+$/, "");
        flush();
        const a = link(url);
        a.textContent = url;
        parent.appendChild(a);
        i += url.length;
      } else if ((rest.startsWith("**") || rest.startsWith("__") || rest.startsWith("~~")) &&
                 !isSpace(text[i + 2]) && !(c === "_" && isWord(text[i - 1]))) {
        const delim = text.slice(i, i + 2);
        const end = findClose(text, i + 2, delim);
        if (end === -1) {
          buf += delim;
          i += 2;
          continue;
        }
        wrap(c === "~" ? "del" : "strong", text.slice(i + 2, end));
        i = end + 2;
      } else if ((c === "*" || c === "_") && !isSpace(text[i + 1]) && !(c === "_" && isWord(text[i - 1]))) {
        const end = findClose(text, i + 1, c);
        if (end === -1) {
          buf += c;
          i += 1;
          continue;
        }
        wrap("em", text.slice(i + 1, end));
        i = end + 1;
      } else {
        buf += c;
        i += 1;
      }
    }
    flush();
  }

  function render(text, opts) {
    const frag = document.createDocumentFragment();
    blocks(String(text).replace(/\r\n?/g, "\n").split("\n"), frag, opts || {});
    return frag;
  }

  return { render, inline };
})();
