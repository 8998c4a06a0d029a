// The console's shell: sign-in, the tenant switcher, and the pages
// (#/hunt, #/alerts, #/rules, #/health).

import { Api, ApiError } from "./api.js";
import { errorBox } from "./widgets.js";
import * as hunt from "./hunt.js";
import * as alerts from "./alerts.js";
import * as rules from "./rules.js";
import * as health from "./health.js";

const PAGES = { hunt, alerts, rules, health };
const TOKEN_KEY = "spoor.token";
const TENANT_KEY = "spoor.tenant";

const $ = (id) => document.getElementById(id);

const ctx = {
  api: null,
  me: null,
  tenant: null,
  // Hand-over between pages (a pivot from an alert into Hunt).
  pending: null,
  go(page, pending) {
    ctx.pending = pending || null;
    if (location.hash === `#/${page}`) show();
    else location.hash = `#/${page}`;
  },
};

async function signIn(token) {
  const api = new Api(token);
  const me = await api.get("/v1/whoami");
  ctx.api = api;
  ctx.me = me;
  const remembered = sessionStorage.getItem(TENANT_KEY);
  ctx.tenant = me.tenants.includes(remembered) ? remembered : me.tenants[0];
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = me.auth !== "token";
  const who = me.role ? `${me.role}${me.cluster_admin ? " (cluster admin)" : ""}` : "no sign-in needed";
  $("who").textContent = who;
  const select = $("tenant");
  select.replaceChildren(...me.tenants.map((t) => new Option(t, t, false, t === ctx.tenant)));
  $("tenant-box").hidden = false;
  show();
}

function showLogin(message) {
  $("nav").hidden = true;
  $("tenant-box").hidden = true;
  $("sign-out").hidden = true;
  $("page").replaceChildren();
  $("login").hidden = false;
  $("login-error").replaceChildren(...(message ? [errorBox(message)] : []));
  $("token").focus();
}

let current = null;

function show() {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || "hunt";
  const page = PAGES[name] || hunt;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === name);
  }
  if (current && current.unmount) current.unmount();
  const root = $("page");
  root.replaceChildren();
  current = page.mount(ctx, root) || null;
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await signIn($("token").value.trim());
  } catch (e) {
    showLogin(e instanceof ApiError && e.status === 401 ? new Error("that token is not valid (unknown, revoked or expired)") : e);
  }
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(TENANT_KEY);
  ctx.api = null;
  showLogin();
});

$("tenant").addEventListener("change", (ev) => {
  ctx.tenant = ev.target.value;
  sessionStorage.setItem(TENANT_KEY, ctx.tenant);
  show();
});

window.addEventListener("hashchange", () => {
  if (ctx.api) show();
});

(async () => {
  try {
    await signIn(sessionStorage.getItem(TOKEN_KEY) || "");
  } catch (e) {
    showLogin(e instanceof ApiError && e.status === 401 ? null : e);
  }
})();
