// The Oracle dashboard page. Plain JavaScript, no libraries, nothing from the internet.
//
// Every string that comes from a pod (names, methods, checks, versions, errors) reaches the page
// through text nodes or setAttribute of a harmless attribute, never as HTML: this file does not
// use innerHTML, outerHTML, insertAdjacentHTML or document.write. All URLs are relative, so the
// page works behind `kubectl port-forward` and under a path prefix.
"use strict";

(() => {
  const WINDOW_NAMES = { "1m": "1 min", "5m": "5 min", "1h": "1 hour", all: "since start" };
  const HISTORY_EVERY_MS = 4000; // the sidecars' ring has a point every 5 s
  const SVG_NS = "http://www.w3.org/2000/svg";
  const DASH = "—";

  const state = {
    window: windowFromUrl(),
    paused: false,
    refresh: 5,
    timer: null,
    busy: false,
    again: false,
    generation: 0, // bumped by Pause, so that an answer already on its way is not shown
    status: null,
    history: null,
    historyAt: 0,
    historyKey: "",
    lastOk: null,
    failing: null,
    rpcBlocks: new Map(), // key -> {details, summaryText, body}
    openBlocks: new Set(["summed"]),
  };

  // -- DOM helpers ---------------------------------------------------------------------------

  /** An element; string children become text nodes, null children are skipped. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.setAttribute("class", value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  const $ = (id) => document.getElementById(id);

  // -- the window: one per view, kept in the URL (?window=5m) -------------------------------

  /** The window the URL names, or the default one minute. */
  function windowFromUrl() {
    const asked = new URLSearchParams(window.location.search).get("window");
    return Object.prototype.hasOwnProperty.call(WINDOW_NAMES, asked) ? asked : "1m";
  }

  /** Put the chosen window in the address bar, so a reload or a shared link shows it. */
  function windowToUrl(name) {
    const url = new URL(window.location.href);
    if (name === "1m") url.searchParams.delete("window");
    else url.searchParams.set("window", name);
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  /** How the summed percentiles were made, in words for the page. */
  function percentileNote(summed) {
    return summed.percentiles === "merged" ? "all pods' calls merged"
                                           : "highest pod (percentiles cannot be added)";
  }

  // -- formatting ----------------------------------------------------------------------------

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  function fmtCount(n) {
    return isNum(n) ? Math.round(n).toLocaleString("en-US") : DASH;
  }

  function fmtRate(r) {
    if (!isNum(r)) return DASH;
    const digits = r >= 100 ? 0 : r >= 10 ? 1 : 2;
    return `${r.toFixed(digits)}/s`;
  }

  function fmtPct(p) {
    if (!isNum(p)) return DASH;
    if (p === 0) return "0 %";
    return `${p.toFixed(p >= 10 ? 1 : 2)} %`;
  }

  function fmtMs(ms) {
    if (!isNum(ms)) return DASH;
    if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10000 ? 1 : 2)} s`;
    if (ms >= 100) return `${ms.toFixed(0)} ms`;
    if (ms >= 10) return `${ms.toFixed(1)} ms`;
    if (ms > 0 && ms < 0.01) return "<0.01 ms";
    return `${ms.toFixed(2)} ms`;
  }

  function fmtDuration(sec) {
    if (!isNum(sec)) return DASH;
    if (sec < 60) return `${Math.floor(sec)} s`;
    const m = Math.floor(sec / 60);
    if (m < 60) return `${m} min`;
    const hours = Math.floor(m / 60);
    if (hours < 48) return `${hours} h ${m % 60} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  function fmtAge(sec) {
    if (!isNum(sec)) return "never";
    return sec < 10 ? `${sec.toFixed(1)} s` : fmtDuration(sec);
  }

  function fmtClock(unix) {
    if (!isNum(unix)) return DASH;
    return new Date(unix * 1000).toLocaleTimeString([], { hour12: false });
  }

  function fmtAgo(unix) {
    if (!isNum(unix)) return DASH;
    const ago = Date.now() / 1000 - unix;
    return ago >= 0 ? `${fmtAge(ago)} ago` : `in ${fmtAge(-ago)}`;
  }

  function fmtWhen(unix) {
    if (!isNum(unix)) return DASH;
    const ago = Date.now() / 1000 - unix;
    const rel = ago >= 0 ? `${fmtAge(ago)} ago` : `in ${fmtAge(-ago)}`;
    return `${fmtClock(unix)} (${rel})`;
  }

  const rpcName = (row) => `${row.service}/${row.method}`;

  /**
   * An RPC as a bold method over a muted service. Long names are cut with an ellipsis so that
   * no table grows past the screen; the full name shows on hover (title) and on keyboard focus.
   */
  function rpcLabel(method, service) {
    const full = service ? `${service}/${method}` : method;
    return h("span", { class: "rpc-name", title: full, tabindex: "0" },
      h("span", { class: "method" }, method),
      service ? h("span", { class: "service" }, service) : null);
  }

  /** "pkg.Service/Method" as :func:`rpcLabel` shows it. */
  function splitRpc(text) {
    const cut = text.lastIndexOf("/");
    return cut < 0 ? rpcLabel(text, "") : rpcLabel(text.slice(cut + 1), text.slice(0, cut));
  }

  // -- fetching ------------------------------------------------------------------------------

  async function getJSON(url) {
    const control = new AbortController();
    const limit = setTimeout(() => control.abort(), Math.max(10000, state.refresh * 2000));
    try {
      const response = await fetch(url, { cache: "no-store", signal: control.signal,
                                           headers: { Accept: "application/json" } });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        const why = body && typeof body.error === "string" ? body.error : response.statusText;
        throw new Error(`HTTP ${response.status}: ${why}`);
      }
      return body;
    } catch (err) {
      if (err.name === "AbortError") throw new Error("no answer in time");
      throw err;
    } finally {
      clearTimeout(limit);
    }
  }

  async function update() {
    if (state.busy) {
      state.again = true; // a window or chart change while fetching: fetch again after
      return;
    }
    clearTimeout(state.timer);
    state.busy = true;
    const generation = state.generation;
    try {
      const status = await getJSON(`api/status?window=${encodeURIComponent(state.window)}`);
      if (generation !== state.generation) return; // paused meanwhile: keep the frozen view
      state.status = status;
      state.refresh = status.dashboard.refresh_seconds || state.refresh;
      state.lastOk = Date.now();
      state.failing = null;
      renderStatus();
      renderBanners(); // with the status they come from, not after the charts' fetch
      const key = `pod=${encodeURIComponent($("chart-pod").value)}` +
                  `&rpc=${encodeURIComponent($("chart-rpc").value)}`;
      if (key !== state.historyKey || Date.now() - state.historyAt >= HISTORY_EVERY_MS) {
        try {
          const history = await getJSON(`api/history?${key}`);
          if (generation !== state.generation) return;
          state.history = history;
          state.historyAt = Date.now();
          state.historyKey = key;
          state.historyError = null;
        } catch (err) {
          state.historyError = String(err.message || err);
        }
      }
      renderCharts(); // the headlines follow every status, so they agree with the cards
    } catch (err) {
      state.failing = String(err.message || err);
    } finally {
      state.busy = false;
      renderBanners();
      renderUpdated();
      if (state.again) {
        state.again = false;
        update();
      } else {
        schedule();
      }
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    if (!state.paused) state.timer = setTimeout(update, state.refresh * 1000);
  }

  // -- header, banners, overview ---------------------------------------------------------------

  function renderUpdated() {
    const when = state.lastOk ? new Date(state.lastOk).toLocaleTimeString([], { hour12: false })
                              : null;
    const node = $("updated");
    const stale = state.lastOk && Date.now() - state.lastOk > state.refresh * 3000;
    node.classList.toggle("stale", Boolean(stale || state.failing));
    if (state.paused) {
      node.textContent = when ? `Paused · last updated ${when}` : "Paused";
    } else {
      node.textContent = when ? `Updated ${when} · every ${state.refresh} s` : "Loading…";
    }
  }

  function renderBanners() {
    const box = $("banners");
    const items = [];
    if (state.failing) {
      const since = state.lastOk ? ` Showing data from ${new Date(state.lastOk)
        .toLocaleTimeString([], { hour12: false })}.` : "";
      items.push(h("div", { class: "banner error" },
        h("strong", {}, "The dashboard server does not answer: "), state.failing, since));
    }
    for (const problem of (state.status && !state.failing ? state.status.problems : [])) {
      items.push(h("div", { class: `banner ${problem.level === "error" ? "error" : "warning"}` },
        problem.text));
    }
    box.replaceChildren(...items);
  }

  function tile(label, value, cls, note) {
    return h("div", { class: `tile ${cls || ""}` },
      h("div", { class: "tile-label" }, label),
      h("div", { class: "tile-value" }, value),
      note ? h("div", { class: "tile-note" }, note) : null);
  }

  function errClass(pct) {
    if (!isNum(pct) || pct === 0) return "";
    return pct >= 5 ? "bad" : "warn";
  }

  function latClass(ms) {
    if (!isNum(ms)) return "";
    return ms >= 10000 ? "bad" : ms >= 5000 ? "warn" : "";
  }

  function renderOverview(status) {
    const pods = status.pods;
    const healthy = pods.filter((p) => p.health.status === "healthy").length;
    const total = status.summed.totals;
    const open = status.alerts.readable ? status.alerts.alerts.filter((a) => a.open) : [];
    const critical = open.some((a) => a.severity === "CRITICAL");
    $("overview").replaceChildren(
      tile("Pods healthy", `${healthy} / ${pods.length}`,
           pods.length && healthy === pods.length ? "good" : pods.length ? "bad" : "warn",
           pods.length ? `${status.summed.pods_counted} reporting` : "none found"),
      tile("Requests", fmtRate(total.rate_per_second), "",
           `${fmtCount(total.count)} in ${WINDOW_NAMES[state.window]}`),
      tile("Errors", fmtPct(total.error_rate_percent), errClass(total.error_rate_percent),
           `${fmtCount(total.errors)} failed in ${WINDOW_NAMES[state.window]}`),
      tile("p95 latency", fmtMs(total.p95_ms), latClass(total.p95_ms),
           `${WINDOW_NAMES[state.window]} · ${status.summed.percentiles === "merged"
             ? "all pods merged" : "highest pod"}`),
      tile("Open alerts", status.alerts.readable ? String(open.length) : DASH,
           !status.alerts.readable ? "" : open.length ? (critical ? "bad" : "warn") : "good",
           status.alerts.readable ? (critical ? "critical open" : "from the alerter")
                                  : "state unavailable"),
    );
  }

  // -- pods ----------------------------------------------------------------------------------

  const HEALTH_CLASS = { healthy: "good", degraded: "warn", down: "bad", unreachable: "bad",
                         unknown: "muted" };

  function badge(text, cls, title) {
    return h("span", { class: `badge ${cls || ""}`, title: title || null }, text);
  }

  function podCard(pod) {
    const health = pod.health;
    const hs = health.status;
    const badges = [badge(hs, HEALTH_CLASS[hs] || "muted", health.reason)];
    if (pod.reachable) {
      badges.push(badge(health.ready ? "ready" : "not ready", health.ready ? "good" : "warn",
                        health.ready_reason));
      const fresh = health.freshness;
      badges.push(badge(`push ${fmtAge(health.last_push_age_seconds)}`,
                        fresh === "fresh" ? "good" : fresh === "amber" ? "warn" : "bad",
                        "time since the Oracle last pushed its figures to the sidecar"));
    }
    if (pod.phase && pod.phase !== "Running") badges.push(badge(pod.phase, "warn"));

    const body = [];
    if (pod.reachable) {
      const t = pod.window ? pod.window.totals : null;
      body.push(h("dl", { class: "facts" },
        h("dt", {}, "Service"),
        h("dd", {}, health.service || DASH,
          health.service_version ? h("span", { class: "muted" }, ` ${health.service_version}`)
                                 : null),
        h("dt", {}, "Uptime"), h("dd", {}, fmtDuration(health.service_uptime_seconds)),
        h("dt", {}, "Traffic"),
        h("dd", {}, t ? `${fmtRate(t.rate_per_second)} · ${fmtPct(t.error_rate_percent)} errors`
                      : DASH),
        h("dt", {}, "Sidecar"),
        h("dd", {}, `${health.version || DASH} · up ${fmtDuration(health.uptime_seconds)}`)));
      const checks = Object.entries(health.checks || {});
      if (checks.length) {
        body.push(h("ul", { class: "checks", "aria-label": "checks" },
          checks.map(([name, text]) => h("li", {},
            h("span", { class: "check-name" }, name), " ", h("span", {}, text)))));
      }
      if (hs !== "healthy" && health.reason) body.push(h("p", { class: "reason" }, health.reason));
    } else {
      body.push(h("p", { class: "reason bad-text" }, pod.error || "unreachable"));
    }
    return h("article", { class: `pod ${HEALTH_CLASS[hs] || ""}`, "aria-label": `pod ${pod.name}` },
      h("header", {},
        h("h3", { title: pod.url || null }, pod.name),
        h("div", { class: "badges" }, badges)),
      body);
  }

  function renderPods(status) {
    const box = $("pods");
    if (!status.pods.length) {
      box.replaceChildren(h("p", { class: "empty" }, "No pods to show."));
      return;
    }
    box.replaceChildren(...status.pods.map(podCard));
  }

  // -- RPC tables ----------------------------------------------------------------------------

  const COLUMNS = [
    ["Req/s", (r) => fmtRate(r.rate_per_second)],
    ["Count", (r) => fmtCount(r.count)],
    ["Errors", (r) => fmtCount(r.errors)],
    ["Error %", (r) => fmtPct(r.error_rate_percent), (r) => errClass(r.error_rate_percent)],
    ["p50", (r) => fmtMs(r.p50_ms), (r) => latClass(r.p50_ms)],
    ["p95", (r) => fmtMs(r.p95_ms), (r) => latClass(r.p95_ms)],
    ["p99", (r) => fmtMs(r.p99_ms), (r) => latClass(r.p99_ms)],
    ["Max", (r) => fmtMs(r.max_ms)],
    ["Last error", (r) => (r.last_error
      ? [h("span", { class: "code" }, r.last_error.code || "?"),
         h("span", { class: "ago", title: fmtClock(r.last_error.time) }, fmtAgo(r.last_error.time))]
      : DASH), null, "when"],
  ];

  function rpcTable(rows, totals, summed) {
    const head = h("tr", {}, h("th", { scope: "col" }, "RPC"),
      COLUMNS.map(([label, , , align]) => {
        const pct = summed === "highest pod" && /^p\d/.test(label);
        return h("th", { scope: "col", class: align || "num",
                         title: pct ? "highest pod: percentiles cannot be added" : null },
                 pct ? `${label} ▴` : label);
      }),
      summed ? h("th", { scope: "col", class: "num" }, "Pods") : null);
    const line = (row, label) => h("tr", {},
      h("th", { scope: "row", class: "rpc" }, label),
      COLUMNS.map(([, text, cls, align]) =>
        h("td", { class: `${align || "num"} ${cls ? cls(row) : ""}` }, text(row))),
      summed ? h("td", { class: "num" }, String(row.pods)) : null);
    const body = rows.length
      ? rows.map((row) => line(row, rpcLabel(row.method, row.service)))
      : [h("tr", {}, h("td", { class: "empty", colspan: COLUMNS.length + (summed ? 2 : 1) },
                       "No RPCs in this window."))];
    return h("div", { class: "table-wrap" },
      h("table", { class: "rpcs" },
        h("thead", {}, head),
        h("tbody", {}, body),
        rows.length && totals ? h("tfoot", {}, line(totals, "All RPCs")) : null));
  }

  /** A <details> block that survives refreshes, so keyboard focus and open state stay put. */
  function block(key, container) {
    let b = state.rpcBlocks.get(key);
    if (!b) {
      const summaryText = h("span", {});
      const summary = h("summary", {}, summaryText);
      const body = h("div", {});
      const details = h("details", { class: "rpc-block" }, summary, body);
      if (state.openBlocks.has(key)) details.open = true;
      details.addEventListener("toggle", () => {
        if (details.open) state.openBlocks.add(key);
        else state.openBlocks.delete(key);
      });
      b = { details, summaryText, body };
      state.rpcBlocks.set(key, b);
    }
    container.append(b.details);
    return b;
  }

  function renderRpcs(status) {
    const box = $("rpcs");
    const summed = status.summed;
    const w = WINDOW_NAMES[state.window];
    $("rpcs-note").textContent =
      `${w} window · summed over ${summed.pods_counted} pod${summed.pods_counted === 1 ? "" : "s"}` +
      ` · percentiles: ${percentileNote(summed)}` +
      (summed.percentiles === "merged" ? "" : " ▴");
    const frag = document.createDocumentFragment();
    const keep = new Set(["summed"]);
    const all = block("summed", frag);
    all.summaryText.replaceChildren(h("strong", {}, "All pods"),
      h("span", { class: "muted" }, ` · ${summed.rpcs.length} RPCs · ` +
        `${fmtRate(summed.totals.rate_per_second)} · ${fmtPct(summed.totals.error_rate_percent)} errors`));
    all.body.replaceChildren(rpcTable(summed.rpcs, summed.totals, summed.percentiles));
    for (const pod of status.pods) {
      const key = `pod:${pod.name}`;
      keep.add(key);
      const b = block(key, frag);
      const t = pod.window ? pod.window.totals : null;
      b.summaryText.replaceChildren(h("strong", {}, pod.name),
        h("span", { class: "muted" }, pod.reachable && t
          ? ` · ${pod.window.rpcs.length} RPCs · ${fmtRate(t.rate_per_second)} · ` +
            `${fmtPct(t.error_rate_percent)} errors`
          : ` · ${pod.error || "no figures"}`));
      b.body.replaceChildren(pod.reachable && pod.window
        ? rpcTable(pod.window.rpcs, pod.window.totals, false)
        : h("p", { class: "empty" }, pod.error || "This pod has no figures for this window."));
    }
    for (const key of [...state.rpcBlocks.keys()]) {
      if (!keep.has(key)) state.rpcBlocks.delete(key);
    }
    box.replaceChildren(frag);
  }

  // -- charts --------------------------------------------------------------------------------

  /** Keep a <select>'s options in step with ``values`` without disturbing the chosen one. */
  function syncOptions(select, values, allLabel) {
    const have = [...select.options].slice(1).map((o) => o.value);
    const chosen = select.value;
    if (chosen && !values.includes(chosen)) values = [...values, chosen];
    if (have.length === values.length && have.every((v, i) => v === values[i])) return;
    select.replaceChildren(h("option", { value: "" }, allLabel),
      ...values.map((v) => h("option", { value: v }, v)));
    select.value = chosen;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  /** The window's figures for the charts' pod and RPC: what the cards and tables say too. */
  function chartScopeRow() {
    const status = state.status;
    if (!status) return null;
    const pod = $("chart-pod").value;
    const rpc = $("chart-rpc").value;
    const pick = (w) => (!w ? null : rpc ? w.rpcs.find((r) => rpcName(r) === rpc) || null
                                          : w.totals);
    if (!pod) return pick(status.summed);
    const found = status.pods.find((p) => p.name === pod);
    return found ? pick(found.window) : null;
  }

  function drawChart(spec, points, now, figures) {
    const W = 600;
    const H = 140;
    const values = points.map((p) => p[spec.key]);
    const known = values.filter(isNum);
    const top = niceMax(Math.max(spec.floor, ...known));
    const first = points.length ? points[0].time - points[0].seconds : now - 3600;
    const start = Math.max(now - 3600, Math.min(first, now - 60));
    const x = (t) => ((t - start) / (now - start)) * W;
    const y = (v) => H - (v / top) * (H - 6) - 1;

    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
                               class: "chart-svg", role: "img",
                               "aria-label": `${spec.title}: ${known.length} points` });
    for (const frac of [0, 0.5, 1]) {
      chart.append(svg("line", { x1: 0, x2: W, y1: y(top * frac), y2: y(top * frac),
                                 class: "grid", "vector-effect": "non-scaling-stroke" }));
    }
    // Split the line where a value is missing or points are far apart (a sidecar restarted).
    const segments = [];
    let current = [];
    points.forEach((p, i) => {
      const v = values[i];
      const gap = i > 0 && p.time - points[i - 1].time > 2.5 * Math.max(p.seconds, 5);
      if (!isNum(v) || gap) {
        if (current.length) segments.push(current);
        current = [];
      }
      if (isNum(v)) current.push([x(p.time), y(v)]);
    });
    if (current.length) segments.push(current);
    for (const seg of segments) {
      const line = seg.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)} ${py.toFixed(1)}`)
        .join(" ");
      if (seg.length > 1) {
        const area = `${line} L${seg[seg.length - 1][0].toFixed(1)} ${H} L${seg[0][0].toFixed(1)} ${H} Z`;
        chart.append(svg("path", { d: area, class: `area ${spec.cls}` }));
        chart.append(svg("path", { d: line, class: `line ${spec.cls}`,
                                   "vector-effect": "non-scaling-stroke" }));
      } else {
        const [px, py] = seg[0];
        chart.append(svg("path", { d: `M${px.toFixed(1)} ${py.toFixed(1)} h0.01`,
                                   class: `line dot ${spec.cls}`,
                                   "vector-effect": "non-scaling-stroke" }));
      }
    }
    // The headline is the window's figure (the cards' and tables'), not the latest point's;
    // hovering shows a point's own value.
    const headline = figures ? spec.fmt(figures[spec.key]) : DASH;
    const minutes = Math.round((now - start) / 60);
    const span = minutes >= 60 ? "last hour" : `last ${Math.max(minutes, 1)} min`;
    const over = `${WINDOW_NAMES[state.window]} window`;
    const readout = h("span", { class: "chart-value", title: `over the ${over}` }, headline);
    const caption = h("span", { class: "chart-window muted" }, over);
    const middle = h("span", {}, known.length ? span : "no data yet");
    chart.addEventListener("mousemove", (event) => {
      const box = chart.getBoundingClientRect();
      const t = start + ((event.clientX - box.left) / box.width) * (now - start);
      let best = null;
      for (const p of points) {
        if (isNum(p[spec.key]) && (!best || Math.abs(p.time - t) < Math.abs(best.time - t))) best = p;
      }
      if (best) {
        readout.textContent = spec.fmt(best[spec.key]);
        caption.textContent = `at ${fmtClock(best.time)}`;
        middle.textContent = `at ${fmtClock(best.time)}`;
      }
    });
    chart.addEventListener("mouseleave", () => {
      readout.textContent = headline;
      caption.textContent = over;
      middle.textContent = known.length ? span : "no data yet";
    });
    return h("figure", { class: "chart" },
      h("figcaption", {}, h("span", { class: "chart-title" }, spec.title), caption, readout),
      h("div", { class: "chart-box" },
        h("span", { class: "y-max" }, spec.fmt(top)),
        chart),
      h("div", { class: "x-axis muted" },
        h("span", {}, fmtClock(start)), middle, h("span", {}, "now")));
  }

  const CHARTS = [
    { key: "rate_per_second", title: "Requests per second", fmt: fmtRate, floor: 1, cls: "c-rate" },
    { key: "error_rate_percent", title: "Errors", fmt: fmtPct, floor: 1, cls: "c-err" },
    { key: "p95_ms", title: "p95 latency", fmt: fmtMs, floor: 10, cls: "c-lat" },
  ];

  function renderCharts() {
    const history = state.history;
    const box = $("charts");
    if (!history) {
      box.replaceChildren(h("p", { class: "empty" },
        state.historyError ? `No chart data: ${state.historyError}` : "Loading charts…"));
      return;
    }
    const now = history.time;
    const current = chartScopeRow();
    box.replaceChildren(...CHARTS.map((spec) => drawChart(spec, history.series, now, current)));
    const failed = history.pods.filter((p) => p.error);
    const scope = `${history.pod || "all pods"} · ${history.rpc || "all RPCs"}`;
    $("charts-note").textContent = failed.length
      ? `${scope} · without ${failed.map((p) => p.name).join(", ")} (no history from ${
          failed.length === 1 ? "it" : "them"})`
      : `${scope} · headline: ${WINDOW_NAMES[state.window]} window · line: ` +
        "each interval of the last hour";
    if (state.historyError) $("charts-note").textContent += ` · last update failed: ${state.historyError}`;
  }

  // -- alerts --------------------------------------------------------------------------------

  /** What happened to the alert's last message: sent to Telegram, or only logged. */
  function lastSent(a) {
    if (!isNum(a.last_sent)) return "not sent";
    if (a.sent_via === "log") {
      return h("span", { class: "logged", title: "No Telegram bot token was configured: the " +
                         "alerter wrote the message to its log and sent nothing." },
               `logged only, not sent · ${fmtWhen(a.last_sent)}`);
    }
    return fmtWhen(a.last_sent);
  }

  function renderAlerts(alerts) {
    const box = $("alerts");
    const note = $("alerts-note");
    if (!alerts.readable) {
      note.textContent = alerts.source || "";
      box.replaceChildren(h("p", { class: "empty" }, `Alert state unavailable: ${alerts.error}`));
      return;
    }
    const open = alerts.alerts.filter((a) => a.open).length;
    note.textContent = `${alerts.source} · updated ${fmtWhen(alerts.updated)}`;
    if (!alerts.alerts.length) {
      box.replaceChildren(h("p", { class: "empty good-text" }, "No alerts, open or past."));
      return;
    }
    const rows = alerts.alerts.map((a) => h("tr", { class: a.open ? "open" : "closed" },
      h("td", {}, badge(a.open ? a.severity || "?" : "resolved",
                        !a.open ? "muted" : a.severity === "CRITICAL" ? "bad" : "warn")),
      h("td", {}, a.kind || DASH),
      h("td", { class: "target" }, a.target
        ? h("span", { class: "clip", title: a.target, tabindex: "0" }, a.target) : DASH),
      h("td", { class: "rpc" }, a.rpc ? splitRpc(a.rpc) : DASH),
      h("td", {}, fmtWhen(a.opened)),
      h("td", {}, lastSent(a)),
      // A cooldown only matters while the alert is open: a resolved one has none to wait for.
      h("td", {}, a.open && isNum(a.cooldown_until) && a.cooldown_until > Date.now() / 1000
        ? fmtWhen(a.cooldown_until) : DASH),
      h("td", { class: "summary" }, a.summary || "")));
    box.replaceChildren(
      h("p", { class: open ? "bad-text" : "good-text" },
        open ? `${open} open alert${open === 1 ? "" : "s"}` : "No open alerts."),
      h("div", { class: "table-wrap" },
        h("table", { class: "alerts" },
          h("thead", {}, h("tr", {}, ["State", "Kind", "Target", "RPC", "Opened", "Last sent",
                                      "Cooldown until", "Summary"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows))));
  }

  // -- everything ----------------------------------------------------------------------------

  function renderStatus() {
    const status = state.status;
    const d = status.discovery;
    $("scope").textContent = d.mode === "kubernetes"
      ? `pods in ${d.namespace} matching ${d.selector}`
      : `${status.pods.length} sidecar${status.pods.length === 1 ? "" : "s"} by URL`;
    $("footer").textContent = `oracle-sidecar dashboard ${status.dashboard.version} · ` +
      `pods answered in ${status.dashboard.fetch_seconds.toFixed(2)} s`;
    renderOverview(status);
    renderPods(status);
    renderRpcs(status);
    renderAlerts(status.alerts);
    syncOptions($("chart-pod"), status.pods.map((p) => p.name), "all pods");
    syncOptions($("chart-rpc"), status.summed.rpcs.map(rpcName), "all RPCs");
  }

  function setWindow(name) {
    state.window = name;
    windowToUrl(name);
    for (const button of document.querySelectorAll("[data-window]")) {
      button.setAttribute("aria-pressed", String(button.dataset.window === name));
    }
    update();
  }

  function togglePause() {
    state.paused = !state.paused;
    const button = $("pause");
    button.setAttribute("aria-pressed", String(state.paused));
    button.textContent = state.paused ? "Resume" : "Pause";
    button.title = state.paused ? "Resume auto-refresh (P)" : "Pause auto-refresh (P)";
    if (state.paused) {
      state.generation += 1;
      clearTimeout(state.timer);
    } else {
      update();
    }
    renderUpdated();
  }

  function start() {
    for (const button of document.querySelectorAll("[data-window]")) {
      button.addEventListener("click", () => setWindow(button.dataset.window));
      button.setAttribute("aria-pressed", String(button.dataset.window === state.window));
    }
    $("pause").addEventListener("click", togglePause);
    document.addEventListener("keydown", (event) => {
      const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName);
      if (!typing && !event.ctrlKey && !event.metaKey && !event.altKey &&
          (event.key === "p" || event.key === "P")) {
        togglePause();
      }
    });
    for (const id of ["chart-pod", "chart-rpc"]) {
      $(id).addEventListener("change", () => {
        state.historyKey = "";
        update();
      });
    }
    setInterval(renderUpdated, 1000);
    update();
  }

  start();
})();
