// End-to-end test of the operator console in a real headless browser:
// Debian's chromium driven by playwright-core (which never downloads a
// browser). Launched by tests/api/ui_browser.rs, which spawns the app with
// the Tyk stand-in, prepares a held run and checks the stand-in afterwards.
//
// Environment: UI_URL (the app's base URL), UI_TOKEN (the admin token),
// UI_SCREENSHOTS (directory for the PNGs), UI_HELD_EMAIL (someone the held
// run deactivates), UI_PERSON (someone to find), UI_QUARANTINED (someone
// Tyk refused, whom Tyk now accepts: retried from the Failures page).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.UI_URL;
const token = process.env.UI_TOKEN;
const shots = process.env.UI_SCREENSHOTS;
const person = process.env.UI_PERSON;
const quarantined = process.env.UI_QUARANTINED;
if (!base || !token || !shots || !person || !quarantined) {
  console.error("UI_URL, UI_TOKEN, UI_SCREENSHOTS, UI_PERSON and UI_QUARANTINED must be set");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const steps = [];
function step(what) {
  steps.push(what);
  console.log(`ok - ${what}`);
}
function expect(condition, what) {
  if (!condition) throw new Error(`expected: ${what}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, javaScriptEnabled: false });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const shot = async (name, target = page) =>
    target.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const heading = async () => (await page.locator("h1").first().textContent()).trim();

  // Without a session: the login form.
  await page.goto(`${base}/ui/`);
  expect(new URL(page.url()).pathname === "/ui/login", `redirected to /ui/login, got ${page.url()}`);
  await shot("login");
  // A wrong token: the form again with an error.
  await page.getByLabel("Admin token").fill("wrong-token");
  await page.keyboard.press("Enter");
  await page.waitForLoadState();
  expect((await page.getByRole("alert").textContent()).includes("not the admin token"), "a wrong-token error");
  step("a wrong token is refused with an error");
  // Log in with the keyboard only: token, Tab, name, Enter.
  await page.getByLabel("Admin token").fill(token);
  await page.keyboard.press("Tab");
  await page.keyboard.type("Dana Scully");
  await page.keyboard.press("Enter");
  await page.waitForURL(`${base}/ui/`);
  expect((await heading()) === "Status", "the status page after login");
  const alert = await page.getByRole("alert").textContent();
  expect(alert.includes("Attention needed") && alert.includes("held"), `status names the held run: ${alert}`);
  expect(alert.includes("1 person(s) quarantined"), `status names the quarantine: ${alert}`);
  await shot("status-attention");
  step("logged in; the status page says a run is held and someone quarantined, not OK");

  // The quarantined person: on the Failures page, on their own page, retried.
  await page.getByRole("link", { name: "Failures", exact: true }).click();
  expect((await heading()) === "Failures", "the failures page");
  const failures = await page.locator("main").textContent();
  expect(failures.includes(quarantined) && failures.includes("tyk_refused"), `the failures page lists ${quarantined}: ${failures}`);
  await shot("failures");
  await page.getByRole("link", { name: quarantined }).click();
  expect((await heading()) === quarantined, "the quarantined person's page");
  const side = await page.locator("main").textContent();
  expect(side.includes("Quarantined") && side.includes("User object validation failed."), `the quarantine with Tyk's reason: ${side}`);
  expect(side.includes("Tyk has no user with this e-mail."), "what Tyk holds");
  await shot("person-quarantined");
  await page.getByRole("link", { name: "Failures", exact: true }).click();
  await page.getByRole("button", { name: `Retry ${quarantined}` }).click();
  await page.waitForURL(`${base}/ui/failures`);
  expect((await page.getByRole("status").textContent()).includes("Nobody is quarantined"), "the quarantine is lifted");
  step(`retried ${quarantined} from the Failures page`);

  // Find a person.
  await page.getByRole("link", { name: "People", exact: true }).click();
  await page.getByLabel("E-mail or name").fill(person.split("@")[0].toUpperCase());
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("link", { name: person }).waitFor();
  await shot("people");
  await page.getByRole("link", { name: person }).click();
  expect((await heading()) === person, "the person page");
  expect((await page.locator("main").textContent()).includes("API Developers"), "the winning rule's group");
  await shot("person");
  step(`found ${person} and read the explain view`);
  await page.getByRole("button", { name: "Sync this person now" }).click();
  await page.waitForLoadState();
  expect((await heading()) === `Synced ${person}`, `the sync-now result: ${await heading()}`);
  expect((await page.getByRole("status").textContent()).includes("Nothing to do"), "Tyk already in step");
  await shot("sync-now");
  step(`synced ${person} on demand`);

  // Edit a mapping and see the preview (not saved).
  await page.getByRole("link", { name: "Mappings", exact: true }).click();
  await shot("mappings");
  await page.getByRole("link", { name: "Edit API Developers" }).click();
  await page.getByLabel(/Identity-provider groups/).fill("okta:Nobody");
  await page.getByRole("button", { name: "Preview" }).click();
  const preview = await page.locator("section[aria-labelledby=preview-heading]").textContent();
  expect(/Would be deprovisioned \(\d+\)/.test(preview) && !preview.includes("deprovisioned (0)"), `a preview with removals: ${preview}`);
  await shot("mapping-preview");
  step("edited a mapping and saw who it would deprovision (not saved)");

  // Approve the held run, with a reason.
  await page.getByRole("link", { name: "Runs", exact: true }).click();
  await shot("runs");
  await page.getByRole("link", { name: /^Held .* run / }).first().click();
  expect((await heading()).includes("held"), "a held run page");
  await shot("run-held");
  await page.getByLabel("Why (recorded in the audit log)", { exact: true }).fill("They left the Developers group on purpose");
  await page.getByRole("button", { name: "Approve and apply" }).click();
  await page.waitForLoadState();
  const approved = await page.locator("main").textContent();
  expect(approved.includes("They left the Developers group on purpose"), "the approval's reason on the run");
  expect((await heading()).includes("applied"), `the run was applied: ${await heading()}`);
  step("approved the held run with a reason");

  // The status is OK now; the audit shows the steps.
  await page.getByRole("link", { name: "Status", exact: true }).click();
  expect((await page.getByRole("status").textContent()).includes("OK"), "status OK after approval");
  await shot("status");
  await page.getByRole("link", { name: "Audit", exact: true }).click();
  await page.getByLabel("Step").selectOption("deactivate");
  await page.getByRole("button", { name: "Search" }).click();
  expect((await page.locator("main").textContent()).includes("They left"), "the audit rows name why");
  await shot("audit");
  await page.getByRole("link", { name: "LDAP sources", exact: true }).click();
  await shot("ldap");
  step("status OK, audit and LDAP pages read");

  // Readable on a phone.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  await phone.addCookies(await context.cookies());
  const small = await phone.newPage();
  await small.goto(`${base}/ui/`);
  const width = await small.evaluate(() => document.documentElement.scrollWidth);
  expect(width <= 400, `no sideways scrolling on a phone (scroll width ${width})`);
  await shot("status-phone", small);
  await phone.close();
  step(`the status page on a phone (scroll width ${width})`);

  // Log out: back to the form, and the console is closed.
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(`${base}/ui/login`);
  await page.goto(`${base}/ui/runs`);
  expect(new URL(page.url()).pathname === "/ui/login", "logged out");
  step("logged out");
  console.log(JSON.stringify({ steps }));
} finally {
  await browser.close();
}
