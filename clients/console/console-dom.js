// console-dom.js: building the page's elements and the texts in them. Text from the network
// or from the user goes in with textContent (or as a text node), never as HTML.
import { RouterError } from '/router-client.js';

export const $ = (id) => document.getElementById(id);

/** Creates an element: `props` sets attributes (class, text, dataset, on*), children are nodes or strings (text). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child); // a string becomes a text node: never parsed as HTML
  }
  return node;
}

export function pad(n, width = 2) { return String(n).padStart(width, '0'); }

export function clockTime(date = new Date()) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function timeEl(date = new Date()) {
  return el('time', { datetime: date.toISOString(), text: clockTime(date) });
}

export function frameTime(frame) {
  const t = frame && typeof frame.timestamp === 'string' ? new Date(frame.timestamp) : null;
  return t && !Number.isNaN(t.getTime()) ? t : new Date();
}

export function compactJson(value, max = 400) {
  let text;
  try { text = JSON.stringify(value); } catch { text = String(value); }
  if (text === undefined) text = String(value);
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

export function prettyJson(value) {
  try { return JSON.stringify(value, null, 2); } catch { return String(value); }
}

export function showError(node, message) {
  node.textContent = message || '';
  node.hidden = !message;
}

export function errorText(err) {
  if (err instanceof RouterError) return `${err.code}: ${err.message}`;
  return err && err.message ? err.message : String(err);
}

export function durationText(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 90) return `${s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 90) return `${Math.round(m)} min`;
  return `${(m / 60).toFixed(1)} h`;
}
