// Live alert feed of iocstream: server-sent events, filters, history, operator actions, tiles.
// No framework and no build step. Everything from the server is inserted with textContent,
// never as HTML. The access token is only ever sent to /api/login (never stored by the page);
// the session lives in an HttpOnly cookie. The operator name is kept in localStorage.
"use strict";
(() => {
  const I18N = window.IOC_I18N;
  const SEVERITY_RANK = { critical: 4, major: 3, minor: 2, warning: 1, info: 0 };
  const TILE_REFRESH_MS = 15000;
  const S = {
    lang: localStorage.getItem("ioc-lang") || "vi",
    operator: localStorage.getItem("ioc-operator") || "",
    alerts: new Map(), // fingerprint -> alert view
    recent: [], // newest first
    facets: { districts: [], kinds: [] },
    selected: null,
    source: null,
    tilesTimer: null,
    tiles: [],
  };
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const t = (key, vars) => {
    let s = (I18N[S.lang] && I18N[S.lang][key]) || I18N.en[key] || key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
    return s;
  };
  const fmtTime = (iso) => {
    if (!iso) return "";
    const d = new Date(iso);
    return new Intl.DateTimeFormat(S.lang === "vi" ? "vi-VN" : "en-GB", {
      timeZone: "Asia/Ho_Chi_Minh", day: "2-digit", month: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).format(d);
  };

  function toast(message, isError) {
    const box = $("toast");
    box.textContent = message;
    box.className = isError ? "toast toast-error" : "toast";
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
  }

  // ---- language ------------------------------------------------------------------------------
  function applyLanguage() {
    document.documentElement.lang = S.lang;
    document.title = t("title");
    $("lang").textContent = S.lang === "vi" ? "EN" : "VI";
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    renderAll();
  }

  // ---- session -------------------------------------------------------------------------------
  async function login(token) {
    const r = await fetch("/api/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
    });
    return r.status === 204;
  }

  function showLogin(message) {
    stopLive();
    $("main").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-operator").value = S.operator;
    $("login-error").textContent = message || "";
  }

  function showMain() {
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = S.operator;
    startLive();
  }

  async function boot() {
    const hash = new URLSearchParams(location.hash.slice(1));
    if (hash.get("token")) {
      const ok = await login(hash.get("token"));
      history.replaceState(null, "", location.pathname + location.search);
      if (hash.get("operator")) { S.operator = hash.get("operator"); localStorage.setItem("ioc-operator", S.operator); }
      if (!ok) return showLogin(t("wrong_token"));
    }
    const r = await fetch("/api/session", { credentials: "same-origin" });
    if (r.status === 204 && S.operator) showMain(); else showLogin();
  }

  // ---- live stream ---------------------------------------------------------------------------
  function setConnected(on) {
    const c = $("conn");
    c.className = on ? "conn conn-on" : "conn conn-off";
    c.dataset.i18n = on ? "connected" : "disconnected";
    c.textContent = t(c.dataset.i18n);
  }

  function startLive() {
    stopLive();
    const source = new EventSource("/api/stream");
    S.source = source;
    source.addEventListener("open", () => setConnected(true));
    source.addEventListener("snapshot", (e) => {
      const snap = JSON.parse(e.data);
      S.alerts = new Map(snap.alerts.map((a) => [a.fingerprint, a]));
      S.recent = snap.history;
      S.facets = snap.facets;
      renderAll();
      if (S.selected) loadDetail(S.selected);
    });
    source.addEventListener("alert", (e) => onAlert(JSON.parse(e.data)));
    source.addEventListener("error", async () => {
      setConnected(false);
      const r = await fetch("/api/session", { credentials: "same-origin" }).catch(() => null);
      if (r && r.status === 401) showLogin();
    });
    refreshTiles();
    S.tilesTimer = setInterval(refreshTiles, TILE_REFRESH_MS);
  }

  function stopLive() {
    if (S.source) S.source.close();
    S.source = null;
    clearInterval(S.tilesTimer);
    setConnected(false);
  }

  function onAlert(msg) {
    const a = msg.alert;
    const known = S.alerts.get(a.fingerprint);
    if (known && known.revision >= a.revision) return; // already shown (snapshot overlap)
    S.alerts.set(a.fingerprint, a);
    S.recent.unshift(msg.event);
    S.recent.length = Math.min(S.recent.length, 200);
    if (a.district && !S.facets.districts.includes(a.district)) S.facets.districts.push(a.district);
    if (!S.facets.kinds.includes(a.rule)) S.facets.kinds.push(a.rule);
    renderAll(a.fingerprint);
    if (S.selected === a.fingerprint) loadDetail(a.fingerprint);
  }

  // ---- rendering -----------------------------------------------------------------------------
  function filters() {
    return { district: $("f-district").value, kind: $("f-kind").value, state: $("f-state").value };
  }

  function passes(a, f) {
    if (f.district && a.district !== f.district) return false;
    if (f.kind && a.rule !== f.kind) return false;
    if (f.state === "open") return a.open;
    return !f.state || a.state === f.state;
  }

  function fillSelect(select, values) {
    const current = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const v of [...values].sort()) select.add(new Option(v, v));
    select.value = values.includes(current) ? current : "";
  }

  function renderAll(flash) {
    if ($("main").hidden) return;
    fillSelect($("f-district"), S.facets.districts);
    fillSelect($("f-kind"), S.facets.kinds);
    renderFeed(flash);
    renderHistory($("recent"), S.recent.slice(0, 50), true);
    renderTiles();
  }

  function renderFeed(flash) {
    const f = filters();
    const list = [...S.alerts.values()].filter((a) => passes(a, f));
    list.sort((x, y) => (y.changed_at || "").localeCompare(x.changed_at || "") || x.fingerprint.localeCompare(y.fingerprint));
    const feed = $("feed");
    feed.replaceChildren(...list.map((a) => card(a, a.fingerprint === flash)));
    $("empty").hidden = list.length > 0;
    $("count").textContent = t("count", { n: list.length });
  }

  function card(a, flash) {
    const li = el("li", `alert sev-${a.severity || "info"} state-${a.state}${flash ? " flash" : ""}`);
    li.dataset.fp = a.fingerprint;
    li.dataset.state = a.state;
    const head = el("div", "alert-head");
    head.append(
      el("span", "sev-badge", t(`sev_${a.severity || "info"}`)),
      el("span", "state-badge", t(`state_${a.state}`)),
      el("span", "district", a.district),
      el("span", "rule", a.rule),
      el("time", "changed", fmtTime(a.changed_at)),
    );
    li.append(head, el("p", "summary", S.lang === "vi" ? a.summary_vi : a.summary_en));
    const meta = el("p", "meta");
    if (a.value !== null && a.value !== undefined) meta.append(el("span", "value", `${t("value")}: ${Number(a.value).toFixed(1)}`));
    if (a.acknowledged_by) meta.append(el("span", "ack-by", t("acknowledged_by", { who: a.acknowledged_by })));
    if (a.assignee) meta.append(el("span", "assignee", t("assigned_to", { who: a.assignee })));
    if (a.silenced_until && new Date(a.silenced_until) > new Date()) meta.append(el("span", "silenced", t("silenced_until", { t: fmtTime(a.silenced_until) })));
    li.append(meta);
    const actions = el("div", "actions");
    if (a.open && !a.acknowledged_by) actions.append(button("acknowledge", () => act(a, { action: "acknowledge" })));
    if (a.open) actions.append(button("assign", () => {
      const who = prompt(t("assign_prompt"), a.assignee || S.operator);
      if (who !== null) act(a, { action: "assign", assignee: who });
    }));
    const sil = el("select", "silence-select");
    sil.add(new Option(t("silence"), ""));
    for (const [m, k] of [[60, "silence_1h"], [240, "silence_4h"], [1440, "silence_24h"]]) sil.add(new Option(t(k), String(m)));
    sil.addEventListener("change", () => { if (sil.value) act(a, { action: "silence", silence_minutes: Number(sil.value) }); });
    actions.append(sil);
    if (a.open) actions.append(button("resolve", () => act(a, { action: "resolve" })));
    actions.append(button("history", () => loadDetail(a.fingerprint)));
    li.append(actions);
    return li;
  }

  function button(key, onClick) {
    const b = el("button", `btn btn-${key}`, t(key));
    b.type = "button";
    b.dataset.action = key;
    b.addEventListener("click", onClick);
    return b;
  }

  function renderHistory(ol, events, withSubject) {
    ol.replaceChildren(...events.map((e) => {
      const li = el("li", `ev ev-${e.kind}`);
      li.dataset.fp = e.fingerprint;
      li.append(el("time", "", fmtTime(e.at)), el("span", "ev-kind", t(`ev_${e.kind}`)));
      if (withSubject) li.append(el("span", "ev-subject", `${e.rule}${e.district ? " · " + e.district : ""}`));
      li.append(el("span", "ev-actor", `${t("by")} ${e.actor}`));
      if (e.detail) li.append(el("span", "ev-detail", e.detail));
      if (e.comment) li.append(el("q", "ev-comment", e.comment));
      if (withSubject) li.addEventListener("click", () => loadDetail(e.fingerprint));
      return li;
    }));
  }

  async function loadDetail(fp) {
    S.selected = fp;
    const r = await fetch(`/api/alerts/${encodeURIComponent(fp)}`, { credentials: "same-origin" });
    if (!r.ok) return;
    const data = await r.json();
    $("detail").hidden = false;
    $("detail-title").textContent = S.lang === "vi" ? data.alert.summary_vi : data.alert.summary_en;
    renderHistory($("detail-history"), data.history, false);
  }

  async function act(a, body) {
    const r = await fetch(`/api/alerts/${encodeURIComponent(a.fingerprint)}/actions`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, operator: S.operator, alert_id: a.alert_id }),
    });
    if (r.status === 202) toast(t("sent", { action: t(body.action) }));
    else if (r.status === 401) showLogin();
    else toast(t("failed", { error: (await r.json().catch(() => ({}))).error || r.status }), true);
  }

  // ---- tiles ---------------------------------------------------------------------------------
  async function refreshTiles() {
    const r = await fetch("/api/tiles", { credentials: "same-origin" }).catch(() => null);
    if (!r || !r.ok) return;
    S.tiles = (await r.json()).tiles;
    renderTiles();
  }

  function part(label, body, cls) {
    const div = el("div", `part ${cls || ""}`);
    div.append(el("span", "part-label", label));
    if (body === null) div.append(el("span", "part-empty", t("no_data")));
    else div.append(...body);
    return div;
  }

  function renderTiles() {
    const district = $("f-district").value;
    const shown = S.tiles.filter((x) => !district || x.district === district);
    $("tiles").replaceChildren(...shown.map((x) => {
      const box = el("article", "tile");
      box.dataset.district = x.district;
      box.append(el("h3", "", x.district));
      const aqi = x.aqi;
      const aqiPart = part(t("aqi"), aqi && [
        el("span", "aqi-value", aqi.value),
        el("span", "aqi-band", S.lang === "vi" ? aqi.label_vi : aqi.label_en),
        ...(aqi.source === "vn_aqi" ? [] : [el("small", "", t("aqi_indicative"))]),
      ], "aqi");
      if (aqi) { aqiPart.style.setProperty("--band", aqi.colour); aqiPart.dataset.band = aqi.band; }
      const rv = x.river;
      const levels = rv ? ["bd1_m", "bd2_m", "bd3_m"].filter((k) => rv[k] !== null).map((k, i) => `BĐ ${"I".repeat(i + 1)} ${rv[k].toFixed(2)}`).join(" · ") : "";
      const riverPart = part(t("river"), rv && [
        el("span", "river-value", `${rv.station}: ${rv.level_m.toFixed(2)} m`),
        el("span", `river-alarm alarm-${rv.alarm}`, S.lang === "vi" ? rv.label_vi : rv.label_en),
        el("small", "", levels),
      ], "river");
      const sv = x.services;
      const dv = x.devices;
      box.append(
        aqiPart,
        riverPart,
        part(t("services"), sv && [el("span", "", `${sv.on_time_pct.toFixed(1)} %`)], "services"),
        part(t("devices"), dv && [el("span", dv.reporting < dv.expected ? "devices-low" : "", `${dv.reporting} / ${dv.expected}`)], "devices"),
      );
      return box;
    }));
  }

  // ---- wiring --------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("lang").addEventListener("click", () => {
      S.lang = S.lang === "vi" ? "en" : "vi";
      localStorage.setItem("ioc-lang", S.lang);
      applyLanguage();
      if (S.selected) loadDetail(S.selected);
    });
    $("logout").addEventListener("click", async () => {
      await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
      showLogin();
    });
    $("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = $("login-operator").value.trim();
      if (!name) return;
      if (!(await login($("login-token").value))) { $("login-error").textContent = t("wrong_token"); return; }
      $("login-token").value = "";
      S.operator = name;
      localStorage.setItem("ioc-operator", name);
      showMain();
    });
    for (const id of ["f-district", "f-kind", "f-state"]) $(id).addEventListener("change", () => renderAll());
    applyLanguage();
    boot();
  });
})();
