// The inspector page: polls inspect/entries every second with the last id
// it has and puts the new entries on top. Every value comes from clients
// (attacker-controlled): it only ever goes into the page as text.
'use strict';
(function () {
  const rows = document.getElementById('rows');
  const state = document.getElementById('state');
  const empty = document.getElementById('empty');
  const bodies = document.getElementById('bodies');
  let cursor = 0;
  let keep = 200;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function dash(value) {
    return value === undefined || value === null || value === '' ? '—' : String(value);
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return '—';
    if (bytes < 1024) return bytes + ' B';
    return (bytes / 1024).toFixed(1) + ' KiB';
  }

  function skew(secs) {
    if (secs === null || secs === undefined) return '—';
    return (secs > 0 ? '+' : '') + secs + ' s';
  }

  function details(entry) {
    const tr = el('tr', 'details');
    tr.hidden = true;
    const td = el('td');
    td.colSpan = 11;
    const dl = el('dl');
    const add = function (name, value, className) {
      dl.appendChild(el('dt', null, name));
      dl.appendChild(el('dd', className || null, dash(value)));
    };
    add('request', dash(entry.method) + ' ' + dash(entry.target));
    add('provider', entry.provider);
    add('event type', entry.event_type);
    add('secret index', entry.secret_index);
    add('time in layer', entry.layer_ms.toFixed(2) + ' ms');
    add('SHA-256', entry.body_sha256, 'sha-full');
    for (const h of entry.headers) {
      add(h.name, h.value, h.masked ? 'masked header' : 'header');
    }
    if (entry.headers_dropped > 0) add('…', entry.headers_dropped + ' more headers not kept');
    td.appendChild(dl);
    if (entry.body !== null && entry.body !== undefined) {
      td.appendChild(el('p', null, entry.body_truncated ? 'body (cut):' : 'body:'));
      td.appendChild(el('pre', 'body', entry.body));
    }
    const curl = el('textarea', 'curl');
    curl.readOnly = true;
    curl.hidden = true;
    td.appendChild(curl);
    td.appendChild(el('p', 'note curl-note', ''));
    tr.appendChild(td);
    return tr;
  }

  function row(entry) {
    const tr = el('tr', 'entry new');
    tr.dataset.id = String(entry.id);
    tr.dataset.verdict = entry.verdict;
    tr.appendChild(el('td', 'time', new Date(entry.time_ms).toISOString().replace('T', ' ').replace('Z', '')));
    tr.appendChild(el('td', 'route', entry.route));
    const verdict = el('td', 'verdict-cell');
    verdict.appendChild(el('span', 'verdict verdict-' + entry.verdict.replace(/[^a-z]/g, ''), entry.verdict));
    tr.appendChild(verdict);
    tr.appendChild(el('td', 'status', dash(entry.status)));
    tr.appendChild(el('td', 'reason', dash(entry.reason)));
    tr.appendChild(el('td', 'hints', entry.hints.join('; ')));
    tr.appendChild(el('td', 'skew', skew(entry.skew_secs)));
    tr.appendChild(el('td', 'secret', dash(entry.secret_label)));
    tr.appendChild(el('td', 'size', size(entry.body_bytes)));
    const sha = el('td', 'sha', dash(entry.body_sha256));
    sha.title = entry.body_sha256 || '';
    tr.appendChild(sha);
    const actions = el('td', 'actions');
    const more = el('button', 'more', 'details');
    const copy = el('button', 'copy-curl', 'copy as curl');
    copy.disabled = !entry.curl;
    actions.appendChild(more);
    actions.appendChild(copy);
    tr.appendChild(actions);
    const info = details(entry);
    more.addEventListener('click', function () { info.hidden = !info.hidden; });
    copy.addEventListener('click', function () {
      const area = info.querySelector('textarea.curl');
      const note = info.querySelector('.curl-note');
      area.value = entry.curl;
      area.hidden = false;
      info.hidden = false;
      note.textContent = 'Masked values are shell variables: set them (recompute the signature), and save the body as body.json.';
      area.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(entry.curl).then(
          function () { copy.textContent = 'copied'; },
          function () { copy.textContent = 'select and copy'; });
      } else {
        copy.textContent = 'select and copy';
      }
    });
    return [tr, info];
  }

  function trim() {
    const entries = rows.querySelectorAll('tr.entry');
    for (let i = keep; i < entries.length; i++) {
      const info = entries[i].nextElementSibling;
      if (info && info.classList.contains('details')) info.remove();
      entries[i].remove();
    }
  }

  function show(data) {
    keep = data.keep;
    bodies.textContent = data.bodies ? 'bodies ARE kept' : 'bodies are not kept';
    if (data.last < cursor) {
      // The receiver restarted: start over.
      rows.replaceChildren();
      cursor = 0;
      return;
    }
    // Newest first: put the oldest on top first.
    for (let i = data.entries.length - 1; i >= 0; i--) {
      const pair = row(data.entries[i]);
      rows.prepend(pair[1]);
      rows.prepend(pair[0]);
      cursor = Math.max(cursor, data.entries[i].id);
    }
    trim();
    empty.hidden = rows.children.length > 0;
    state.className = 'state';
    state.textContent = 'live: ' + rows.querySelectorAll('tr.entry').length + ' shown (last ' + keep +
      ' kept), updated ' + new Date().toLocaleTimeString();
  }

  async function poll() {
    try {
      const response = await fetch('inspect/entries?after=' + cursor, { cache: 'no-store' });
      if (!response.ok) throw new Error('HTTP ' + response.status);
      show(await response.json());
    } catch (e) {
      state.className = 'state down';
      state.textContent = 'disconnected (' + e.message + '), retrying…';
    }
    setTimeout(poll, 1000);
  }

  poll();
})();
