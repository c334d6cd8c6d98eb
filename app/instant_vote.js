// The instant voting area (see app/instant_vote.py for the protocol and the server side).
//
// The server sends, as raw bytes: a 4-byte length, a JSON header, then the PNG bytes of queries this page does
// not hold yet. The page keeps the reader's current query and the next ones decoded, shows the next one the
// moment a vote is cast, and sends every vote and undo as a request with its own key. Requests stay in a queue
// in localStorage (one per reader, under an opaque tag) until the server acknowledges their key, and the whole
// queue is sent every time, so a lost message, a paused server or a reload never loses or doubles a vote.
export default function (component) {
  const w = window;
  if (!w.__r2cVote) w.__r2cVote = makeStore();
  const S = w.__r2cVote;
  if (!document.getElementById('r2c-iv-style')) {
    const style = document.createElement('style');
    style.id = 'r2c-iv-style';
    style.textContent = __R2C_IV_CSS__;
    document.head.appendChild(style);
  }
  S.setState = component.setStateValue;
  S.mount(component.parentElement);
  if (component.data) S.receive(component.data);
}

function makeStore() {
  const w = window;
  const S = {
    root: null, meta: null, reader: null, queue: [], imgs: new Map(), ready: new Map(), serverList: [],
    current: null, shownAt: 0, forced: null, lastVote: null, nonce: 0, lastSend: 0, lastRender: null, epoch: null,
    remaining: 0, message: '', messageAt: 0, waiting: false, settings: {}, ackedAt: 0, need: new Set(),
    confidence: null, decoded: new Set(), needSent: false,
  };
  const $ = (sel) => (S.root ? S.root.querySelector(sel) : null);
  const now = () => performance.now();
  const storeKey = () => `r2c-vote-queue:${S.reader}`;
  const newKey = () => (w.crypto && crypto.randomUUID ? crypto.randomUUID() :
    Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join(''));

  const save = () => {
    try { w.localStorage.setItem(storeKey(), JSON.stringify(S.queue)); } catch (e) { /* private mode: memory only */ }
  };
  const load = () => {
    try {
      const raw = JSON.parse(w.localStorage.getItem(storeKey()) || '[]');
      if (!Array.isArray(raw)) return [];
      // requests saved by an earlier page: not sent from this one yet; their times belong to that page's clock
      return raw.filter((r) => r && typeof r.key === 'string').map((r) => ({ ...r, sent: false, at: now() }));
    } catch (e) { return []; }
  };

  // -- talking to the server ---------------------------------------------------------------------------------
  const WIRE = ['key', 'kind', 'query', 'slot', 'confidence', 'comment', 'dwell_ms', 'target'];
  S.send = () => {
    if (!S.setState) return;
    S.nonce += 1;
    S.lastSend = now();
    const requests = S.queue.map((r) => Object.fromEntries(WIRE.filter((k) => r[k] !== undefined).map((k) => [k, r[k]])));
    S.queue.forEach((r) => { r.sent = true; });
    S.needSent = S.need.size > 0;
    S.setState('outbox', { nonce: S.nonce, requests, need: Array.from(S.need) });
    S.status();
  };
  // resend while requests wait (a lost message, a paused server); the queue is idempotent on the server
  setInterval(() => {
    if (S.queue.length && now() - S.lastSend > 2500) S.send();
    S.status();
  }, 1000);

  const unpack = (data) => {
    const buf = data instanceof Uint8Array ? data : new Uint8Array(data);
    const n = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(0);
    const meta = JSON.parse(new TextDecoder().decode(buf.subarray(4, 4 + n)));
    const body = buf.subarray(4 + n);
    return [meta, body];
  };

  const addImages = (meta, body) => {
    const byQuery = new Map();
    for (const im of meta.images || []) {
      if (!byQuery.has(im.query)) byQuery.set(im.query, []);
      byQuery.get(im.query)[im.slot - 1] = body.slice(im.offset, im.offset + im.length);
    }
    for (const [token, parts] of byQuery) {
      drop(token);
      const els = parts.map((bytes, i) => {
        const img = new Image();
        img.className = 'r2c-iv-img';
        img.alt = `Image ${i + 1}`;
        img.draggable = false;
        img.src = URL.createObjectURL(new Blob([bytes], { type: 'image/png' }));
        return img;
      });
      S.imgs.set(token, els);
      S.decoded.delete(token);
      S.ready.set(token, Promise.all(els.map((i) => i.decode().catch(() => null))).then(() => {
        if (S.imgs.get(token) === els) S.decoded.add(token);
      }));
      S.need.delete(token);
    }
  };
  const drop = (token) => {
    for (const img of S.imgs.get(token) || []) URL.revokeObjectURL(img.src);
    S.imgs.delete(token);
    S.ready.delete(token);
    S.decoded.delete(token);
  };

  S.receive = (data) => {
    let meta, body;
    try { [meta, body] = unpack(data); } catch (e) { return; }
    // a render is named by its session's epoch and its number: the store outlives a sign-out in this tab, and a new
    // session's first render must not be taken for one already drawn
    const stamp = `${meta.epoch || ''}:${meta.render}`;
    if (stamp === S.lastRender) { S.refresh(); return; }
    S.lastRender = stamp;
    S.settings = meta.settings || {};
    if (S.reader !== meta.reader) {  // first data of this reader on this page: pick up their saved queue
      // (another reader's queue stays in localStorage under their tag, for when they sign in again)
      S.reader = meta.reader;
      S.queue = load();
      S.forced = null;
      S.lastVote = null;
      S.current = null;
      S.need = new Set();
      S.needSent = false;
    } else if (S.epoch !== meta.epoch) {  // the same reader, signed in again (a new sitting): send what waits now
      S.queue.forEach((r) => { r.sent = false; });
      // only a vote of this sitting can be undone: keep Undo for a vote the new sitting has not received yet
      if (S.lastVote && !S.queue.some((r) => r.key === S.lastVote.key)) S.lastVote = null;
    }
    S.epoch = meta.epoch;
    addImages(meta, body);
    S.serverList = meta.queries || [];
    S.remaining = meta.remaining || 0;
    S.progress = meta.progress || null;
    const acked = new Map((meta.acks || []).map((a) => [a.key, a]));
    if (acked.size) S.ackedAt = now();
    const kept = [];
    for (const r of S.queue) {
      const a = acked.get(r.key);
      if (!a) { kept.push(r); continue; }
      if (a.outcome === 'refused') {
        S.say(`A ${r.kind === 'undo' ? 'request to undo' : 'vote'} was not recorded: ${a.message}`);
        if (S.lastVote && S.lastVote.key === r.key) S.lastVote = null;
        if (r.kind === 'undo') S.forced = null;
      } else if (r.kind === 'undo') {
        if (a.outcome === 'nothing') S.say(`Nothing to undo: ${a.message}.`);
        S.forced = null;  // the server lists the query again (or it was never withdrawn)
      }
    }
    const changed = kept.length !== S.queue.length;
    S.queue = kept;
    if (changed) save();
    if (meta.message) S.say(meta.message);
    // queries the server lists but this page lost the images of (e.g. a vote refused after they were dropped)
    for (const q of S.serverList) {
      if (!S.imgs.has(q.token) && !S.need.has(q.token)) { S.need.add(q.token); S.needSent = false; }
    }
    // send what this page has not sent yet (a queue picked up after a reload) and images it lacks; requests the
    // server has seen but not answered (a locked database) go again with the periodic resend
    if (S.queue.some((r) => !r.sent) || (S.need.size && !S.needSent)) S.send();
    evict();
    S.refresh();
  };

  const evict = () => {
    const keep = new Set(S.serverList.map((q) => q.token));
    for (const r of S.queue) if (r.kind === 'vote') keep.add(r.query);
    if (S.forced) keep.add(S.forced.token);
    if (S.lastVote) keep.add(S.lastVote.query.token);
    if (S.current) keep.add(S.current.token);
    for (const token of Array.from(S.imgs.keys())) if (!keep.has(token)) drop(token);
  };

  // -- what to show --------------------------------------------------------------------------------------------
  const candidates = () => {
    const pending = new Set(S.queue.filter((r) => r.kind === 'vote').map((r) => r.query));
    const list = S.forced ? [S.forced] : [];
    for (const q of S.serverList) {
      if (!pending.has(q.token) && !(S.forced && q.token === S.forced.token)) list.push(q);
    }
    return list;
  };

  S.refresh = () => {
    if (!S.root) return;
    const head = candidates()[0] || null;
    if (!head) {
      S.current = null;
      if (S.lastRender === null || S.queue.length || S.remaining > 0) S.showWaiting();  // more to come once the server answers
      else S.showEnd();
      return;
    }
    if (S.current && S.current.token === head.token && !S.waiting) { S.status(); return; }
    if (S.decoded.has(head.token)) { S.display(head); return; }  // the usual case: already decoded, no wait
    S.showWaiting();
    if (!S.imgs.has(head.token)) return;  // asked for (need); the next data brings them
    const token = head.token;
    S.ready.get(token).then(() => {
      const again = candidates()[0];
      if (again && again.token === token && (!S.current || S.current.token !== token || S.waiting)) S.display(again);
    });
  };

  // -- the page --------------------------------------------------------------------------------------------------
  S.mount = (parent) => {
    if (S.root && S.root.isConnected && parent.contains(S.root)) return;
    const root = document.createElement('div');
    root.className = 'r2c-iv';
    root.innerHTML = `
      <div class="r2c-iv-progress" data-testid="r2c-iv-progress"></div>
      <div class="r2c-iv-bar"><div class="r2c-iv-bar-fill"></div></div>
      <div class="r2c-iv-question"></div>
      <div class="r2c-iv-wl"></div>
      <div class="r2c-iv-stage">
        <div class="r2c-iv-grid" role="group" aria-label="Images to compare"></div>
        <div class="r2c-iv-none" hidden><button type="button" class="r2c-iv-nopref" title="Neither image is better (key 0)">No preference</button></div>
        <div class="r2c-iv-wait" hidden>Waiting for the next images from the server…</div>
      </div>
      <div class="r2c-iv-end" hidden></div>
      <div class="r2c-iv-controls">
        <div class="r2c-iv-conf" role="group" aria-label="Confidence (optional)"><span>Confidence (optional)</span></div>
        <label class="r2c-iv-comment">Comment (optional)
          <input type="text" autocomplete="off" placeholder="Anything worth noting about this case"></label>
        <button type="button" class="r2c-iv-undo" disabled title="Withdraw your latest vote and choose again">Undo last vote</button>
      </div>
      <div class="r2c-iv-status" role="status" aria-live="polite"></div>
      <div class="r2c-iv-help"></div>`;
    parent.replaceChildren(root);
    S.root = root;
    const conf = $('.r2c-iv-conf');
    for (let k = 1; k <= 5; k++) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = String(k);
      b.dataset.conf = String(k);
      b.title = k === 1 ? '1 = unsure' : k === 5 ? '5 = certain' : '';
      b.addEventListener('click', () => { S.confidence = S.confidence === k ? null : k; paintConfidence(); });
      conf.appendChild(b);
    }
    $('.r2c-iv-undo').addEventListener('click', () => S.undo());
    $('.r2c-iv-nopref').addEventListener('click', () => S.vote(0));
    S.current = null;
    S.waiting = false;
    S.refresh();
  };

  const paintConfidence = () => {
    for (const b of S.root.querySelectorAll('[data-conf]')) {
      b.setAttribute('aria-pressed', String(Number(b.dataset.conf) === S.confidence));
    }
  };

  const grid = (n) => {
    const g = $('.r2c-iv-grid');
    if (g.children.length !== n) {
      g.replaceChildren();
      g.style.gridTemplateColumns = `repeat(${n}, minmax(0, 1fr))`;
      for (let k = 1; k <= n; k++) {
        const pane = document.createElement('div');
        pane.className = 'r2c-iv-pane';
        pane.innerHTML = `<div class="r2c-iv-frame"></div><div class="r2c-iv-caption">Image ${k}</div>`;
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'r2c-iv-choose';
        b.textContent = `Choose ${k}`;
        b.title = `Choose image ${k} (key ${k})`;
        b.addEventListener('click', () => S.vote(k));
        pane.appendChild(b);
        g.appendChild(pane);
      }
    }
    return g;
  };

  S.display = (q) => {
    const els = S.imgs.get(q.token);
    if (!els) { S.showWaiting(); return; }
    const g = grid(els.length);
    Array.from(g.children).forEach((pane, i) => pane.querySelector('.r2c-iv-frame').replaceChildren(els[i]));
    S.current = q;
    S.waiting = false;
    $('.r2c-iv-wait').hidden = true;
    $('.r2c-iv-end').hidden = true;
    $('.r2c-iv-stage').hidden = false;
    $('.r2c-iv-controls').hidden = false;
    for (const b of g.querySelectorAll('.r2c-iv-choose')) b.disabled = false;
    $('.r2c-iv-none').hidden = !q.no_preference;
    $('.r2c-iv-nopref').disabled = false;
    const st = S.settings;
    $('.r2c-iv-progress').textContent = q.practice
      ? `Practice ${q.index} of ${q.total}: practice answers are not counted.`
      : `Query ${q.index} of ${q.total}`;
    $('.r2c-iv-bar').hidden = !!q.practice;
    $('.r2c-iv-bar-fill').style.width = `${(100 * (q.index - 1)) / Math.max(1, q.total)}%`;
    $('.r2c-iv-question').innerHTML = '';
    const b = document.createElement('b');
    b.textContent = 'Label: ';
    $('.r2c-iv-question').append(b, `${(st.labels || {})[q.label] || q.label}  ·  ${(st.questions || {})[q.kind] || ''}`);
    if (!$('.r2c-iv-wl').childElementCount && st.wl_html) $('.r2c-iv-wl').innerHTML = st.wl_html;
    $('.r2c-iv-help').textContent = st.help || '';
    S.confidence = null;
    paintConfidence();
    const input = $('.r2c-iv-comment input');
    input.value = '';
    input.maxLength = st.max_comment || 2000;
    S.shownAt = now();
    S.status();
  };

  S.showWaiting = () => {
    S.waiting = true;
    if (!S.root) return;
    $('.r2c-iv-wait').hidden = false;
    $('.r2c-iv-end').hidden = true;
    $('.r2c-iv-stage').hidden = false;
    for (const b of S.root.querySelectorAll('.r2c-iv-choose, .r2c-iv-nopref')) b.disabled = true;
    S.status();
  };

  S.showEnd = () => {
    S.waiting = false;
    $('.r2c-iv-stage').hidden = true;
    $('.r2c-iv-controls').hidden = !S.lastVote;
    $('.r2c-iv-progress').textContent = '';
    $('.r2c-iv-bar').hidden = true;
    $('.r2c-iv-question').textContent = '';
    const end = $('.r2c-iv-end');
    end.hidden = false;
    const p = S.progress;
    if (p && p.total) end.textContent = `All done: you answered all ${p.total} queries. Thank you!`;
    else end.textContent = 'No open study has queries for you right now. Ask the study administrator.';
    S.status();
  };

  S.say = (text) => { S.message = text; S.messageAt = now(); S.status(); };

  S.status = () => {
    if (!S.root) return;
    const undo = $('.r2c-iv-undo');
    undo.disabled = !S.lastVote;
    const parts = [];
    const n = S.queue.filter((r) => r.kind === 'vote').length;
    const oldest = S.queue.length ? Math.min(...S.queue.map((r) => r.at || now())) : null;
    if (n && oldest !== null && now() - oldest > 600) {
      const late = now() - Math.max(oldest, S.ackedAt) > 6000;
      parts.push(late
        ? `The server is not answering: ${n} vote${n > 1 ? 's are' : ' is'} kept in this browser and will be sent when it answers (also after a reload).`
        : `${n} vote${n > 1 ? 's' : ''} waiting for the server…`);
    }
    if (S.message && now() - S.messageAt < 8000) parts.push(S.message);
    const el = $('.r2c-iv-status');
    const text = parts.join(' ');
    if (el.textContent !== text) el.textContent = text;
    el.dataset.pending = String(S.queue.length);
  };

  // -- choosing ------------------------------------------------------------------------------------------------
  S.vote = (slot) => {
    const q = S.current;
    if (!q || S.waiting || !S.imgs.has(q.token)) return;
    const none = slot === 0 && q.no_preference;  // "no preference", where the study offers it
    if (!none && (slot < 1 || slot > S.imgs.get(q.token).length)) return;
    const dwell = now() - S.shownAt;
    if (dwell < (S.settings.min_dwell_ms || 0)) {
      S.say('A double click was ignored: the next images had just appeared. Choose again if you meant to.');
      return;
    }
    const comment = ($('.r2c-iv-comment input').value || '').trim();
    const req = { key: newKey(), kind: 'vote', query: q.token, slot: none ? 'none' : slot, dwell_ms: Math.round(dwell),
      at: now() };
    if (S.confidence) req.confidence = S.confidence;
    if (comment) req.comment = comment.slice(0, S.settings.max_comment || 2000);
    S.queue.push(req);
    save();
    S.lastVote = { key: req.key, query: q };
    if (S.forced && S.forced.token === q.token) S.forced = null;
    S.message = '';
    S.refresh();
    S.send();
  };

  S.undo = () => {
    const last = S.lastVote;
    if (!last) return;
    S.lastVote = null;
    S.queue.push({ key: newKey(), kind: 'undo', target: last.key, at: now() });
    save();
    S.forced = last.query;
    S.current = null;
    S.say('Your last vote was withdrawn: choose again.');
    S.refresh();
    S.send();
  };

  document.addEventListener('keydown', (e) => {
    if (!S.root || !S.root.isConnected || e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    if (/^[0-9]$/.test(e.key)) { S.vote(Number(e.key)); e.preventDefault(); }
    else if (e.key === 'u' || e.key === 'U') { S.undo(); e.preventDefault(); }
  });
  return S;
}
