// Stand-in client bundle: the page calls the API through the same origin.
(function () {
  fetch('/api/health', { credentials: 'same-origin' }).catch(function () {});
})();
