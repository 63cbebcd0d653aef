// Starts the dashboard. A file, not an inline script, so the page's Content-Security-Policy
// can refuse every inline script.
import init from "/exile_dashboard.js";
init({ module_or_path: "/exile_dashboard_bg.wasm" });
