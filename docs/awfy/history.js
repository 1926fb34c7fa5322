// Generated from history.jsonl by benches/awfy_record.py; do not edit.
// A script, not JSON, so that index.html works from a file:// URL.
window.AWFY_HISTORY = [
];
