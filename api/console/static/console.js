// The console's only script of its own (htmx does the rest): upload progress bars.
// A form with data-progress="ID" that htmx posts feeds its bytes sent to <progress id=ID>.
document.addEventListener("htmx:xhr:progress", function (event) {
  var form = event.target.closest && event.target.closest("form[data-progress]");
  if (!form || !event.detail.lengthComputable) return;
  var bar = document.getElementById(form.dataset.progress);
  if (bar) bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
});
document.addEventListener("htmx:beforeRequest", function (event) {
  var form = event.target.closest && event.target.closest("form[data-progress]");
  if (!form) return;
  var bar = document.getElementById(form.dataset.progress);
  if (bar) bar.value = 0;
});
// A refusal (4xx) carries its message as a fragment: show it where the answer would go.
document.addEventListener("htmx:beforeSwap", function (event) {
  var status = event.detail.xhr.status;
  if (status >= 400 && status < 500) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
