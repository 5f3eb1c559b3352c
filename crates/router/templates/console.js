// The status page's operator console: progressive enhancement of the server-rendered page.
// Talks only to the operator API (api/openapi.json); the session cookie authorises the calls.
"use strict";
(function () {
  const body = document.body;
  const operator = body.dataset.operator === "true";
  const $ = (sel, root) => (root || document).querySelector(sel);

  async function api(method, path, payload) {
    const init = { method, headers: {}, credentials: "same-origin" };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (v === true) node.setAttribute(k, "");
      else if (v !== false && v !== undefined && v !== null) node.setAttribute(k, v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // --- sign in / out -------------------------------------------------------------------------
  const signIn = $("#sign-in-form");
  if (signIn) {
    signIn.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = $('[data-error-for="token"]', signIn);
      error.textContent = "";
      const result = await api("POST", "api/session", { token: $("#sign-in-token").value });
      if (result.ok) location.reload();
      else error.textContent = (result.data && result.data.error) || ("HTTP " + result.status);
    });
  }
  const signOut = $("#sign-out-form");
  if (signOut) {
    signOut.addEventListener("submit", async (event) => {
      event.preventDefault();
      await api("DELETE", "api/session");
      location.reload();
    });
  }

  // --- static routes -------------------------------------------------------------------------
  const table = $("#static-routes tbody");
  const form = $("#route-form");
  let editing = null; // the route name being edited, null when adding

  function clearErrors() {
    for (const span of form.querySelectorAll(".field-error")) span.textContent = "";
  }

  function showError(result) {
    const data = result.data || {};
    let field = data.field || "form";
    if (field === "path" || field === "subdomain" || field === "host") field = "location";
    const span = $('[data-error-for="' + field + '"]', form) || $('[data-error-for="form"]', form);
    span.textContent = data.error || ("HTTP " + result.status);
  }

  function openForm(route) {
    clearErrors();
    editing = route ? route.name : null;
    $("#route-form-title").textContent = route ? "Edit route " + route.name : "Add route";
    $("#route-name").value = route ? route.name : "";
    $("#route-name").readOnly = !!route;
    $("#route-kind").value = route && route.subdomain ? "subdomain" : route && route.host ? "host" : "path";
    $("#route-location").value = route ? (route.path || route.subdomain || route.host || "") : "";
    $("#route-targets").value = route ? (route.targets || []).join("\n") : "";
    $("#route-load-balanced").checked = !!(route && route.load_balanced);
    $("#route-access").value = (route && route.access) || "authenticated";
    $("#route-groups").value = route ? (route.groups || []).join(", ") : "";
    form.hidden = false;
    $("#route-name").focus();
  }

  function formRoute() {
    const split = (text, sep) => text.split(sep).map((s) => s.trim()).filter((s) => s);
    const route = {
      name: $("#route-name").value.trim(),
      targets: split($("#route-targets").value, /[\n,]/),
      load_balanced: $("#route-load-balanced").checked,
      access: $("#route-access").value,
      groups: split($("#route-groups").value, ","),
      enabled: false,
    };
    route[$("#route-kind").value] = $("#route-location").value.trim();
    return route;
  }

  function row(route) {
    const cells = [
      el("td", { class: "name", text: route.name }),
      el("td", { text: route.path || (route.host ? route.host + " (domain)" : route.subdomain + " (subdomain)") }),
      el("td", {}, route.url ? [el("a", { href: route.url, text: route.url })] : []),
      el("td", { text: (route.targets || []).join(", ") }),
      el("td", { text: (route.access || "authenticated") + ((route.groups || []).length ? ": " + route.groups.join(", ") : "") }),
      el("td", { text: route.load_balanced ? "yes" : "no" }),
    ];
    const toggle = el("input", { type: "checkbox", class: "toggle", "aria-label": "enabled", disabled: !operator });
    toggle.checked = !!route.enabled;
    toggle.addEventListener("change", async () => {
      toggle.disabled = true;
      const action = toggle.checked ? "enable" : "disable";
      const result = await api("POST", "api/static-routes/" + encodeURIComponent(route.name) + "/" + action);
      if (!result.ok) alert(result.data && result.data.error);
      await refreshRoutes();
    });
    cells.push(el("td", {}, [toggle]));
    // Disabled routes say so; enabled ones show what the proxy does (Routing, Not In Use, Pending).
    const state = !route.enabled ? "Disabled"
      : route.status === "Routing" ? el("span", { class: "ok", text: "Routing" }) : route.status;
    cells.push(el("td", { class: "state" }, [state]));
    cells.push(el("td", { text: route.created || "" }));
    cells.push(el("td", { text: route.updated || "" }));
    cells.push(el("td", { text: route.updated_by || "" }));
    const actions = el("td", { class: "actions" });
    if (operator) {
      // As the vendor's console: an enabled route is view-only; disable it to edit it.
      const edit = el("button", { type: "button", class: "edit", text: "Edit", disabled: !!route.enabled,
        title: route.enabled ? "disable the route to edit it" : "" });
      edit.addEventListener("click", () => openForm(route));
      const del = el("button", { type: "button", class: "delete", text: "Delete" });
      del.addEventListener("click", async () => {
        if (!confirm("Delete static route " + route.name + "?")) return;
        const result = await api("DELETE", "api/static-routes/" + encodeURIComponent(route.name));
        if (!result.ok) alert(result.data && result.data.error);
        await refreshRoutes();
      });
      actions.append(edit, " ", del);
    }
    cells.push(actions);
    return el("tr", { "data-route": route.name }, cells);
  }

  async function refreshRoutes() {
    const result = await api("GET", "api/static-routes");
    if (!result.ok || !result.data) return;
    const rows = result.data.routes.map(row);
    if (!rows.length) {
      rows.push(el("tr", { class: "empty" }, [el("td", { colspan: "12", class: "muted", text: "No static routes are defined." })]));
    }
    table.replaceChildren(...rows);
  }

  if (table && form) {
    if (operator) {
      const add = $("#add-route");
      add.hidden = false;
      add.addEventListener("click", () => openForm(null));
      $("#route-cancel").addEventListener("click", () => { form.hidden = true; });
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        clearErrors();
        const route = formRoute();
        const result = editing === null
          ? await api("POST", "api/static-routes", route)
          : await api("PUT", "api/static-routes/" + encodeURIComponent(editing), route);
        if (result.ok) {
          form.hidden = true;
          await refreshRoutes();
        } else {
          showError(result);
        }
      });
    }
    refreshRoutes();
    setInterval(refreshRoutes, 1000);
  }

  // --- traffic --------------------------------------------------------------------------------
  // The charts are drawn by the server; with JavaScript the section is fetched again every 10 s
  // (without it, the page itself reloads).
  const traffic = $("#traffic-section");
  async function refreshTraffic() {
    const response = await fetch(location.pathname, { credentials: "same-origin" });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("traffic-section");
    if (fresh) traffic.replaceChildren(...fresh.childNodes);
  }
  if (traffic) setInterval(() => refreshTraffic().catch(() => {}), 10000);

  // --- self-test -----------------------------------------------------------------------------
  const testForm = $("#self-test-form");
  function showReport(report) {
    if (!report) return;
    $("#self-test").hidden = false;
    const none = $("#self-test-none");
    if (none) none.remove();
    const status = $("#st-status");
    const cls = report.status === "passed" ? "ok" : report.status === "failed" ? "bad" : "";
    status.replaceChildren(el("span", { class: cls, text: report.status }));
    const set = (id, value) => { $(id).textContent = value === null || value === undefined || value === "" ? "-" : value; };
    set("#st-message", report.message);
    set("#st-reason", report.reason);
    set("#st-queue", report.queue);
    set("#st-worker", report.worker);
    set("#st-task", report.task_name + (report.task_id ? " (" + report.task_id + ")" : ""));
    set("#st-started", report.started);
    set("#st-completed", report.completed);
    set("#st-run-time", report.run_time_seconds ? report.run_time_seconds.toFixed(1) + " s" : null);
    set("#st-endpoint", report.endpoint);
    set("#st-browser-endpoint", report.browser_endpoint);
    const log = $("#self-test-log");
    log.hidden = false;
    log.textContent = (report.log || []).map((line) => line + "\n").join("");
  }

  if (testForm && operator) {
    testForm.hidden = false;
    testForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = $('[data-error-for="queue"]', testForm);
      error.textContent = "";
      const button = $("#self-test-run");
      button.disabled = true;
      // The log streams from the events while the POST waits for the whole test.
      const events = new EventSource("api/self-test/events");
      events.addEventListener("report", (message) => {
        const report = JSON.parse(message.data);
        if (report.status === "running") showReport(report);
      });
      try {
        const result = await api("POST", "api/self-test", { queue: $("#self-test-queue").value.trim() });
        if (result.ok) showReport(result.data);
        else error.textContent = (result.data && result.data.error) || ("HTTP " + result.status);
      } finally {
        events.close();
        button.disabled = false;
      }
    });
  }
})();
