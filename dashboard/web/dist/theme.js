// Applies the saved theme (localStorage "floodgate-theme") or, on a first visit, the system's
// prefers-color-scheme, before the first paint. app.js owns the toggle.
(function () {
  var t = null;
  try { t = localStorage.getItem('floodgate-theme'); } catch (e) { /* storage disabled */ }
  if (t !== 'dark' && t !== 'light') {
    t = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  document.documentElement.classList.toggle('dark', t === 'dark');
})();
