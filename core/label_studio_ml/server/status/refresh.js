// Re-renders the live part of the page from the server (the same template), every few seconds.
(() => {
  const live = document.getElementById("live");
  const note = document.getElementById("updated");
  const every = 1000 * Number(live.dataset.refresh || 2);
  const url = location.pathname + "?fragment=1";
  let timer = null;

  async function refresh() {
    clearTimeout(timer);
    if (!document.hidden) {
      try {
        const reply = await fetch(url, {headers: {Accept: "text/html"}, cache: "no-store"});
        if (!reply.ok) throw new Error("HTTP " + reply.status);
        live.innerHTML = await reply.text();
        note.textContent = "updated " + new Date().toLocaleTimeString();
        document.body.classList.remove("offline");
      } catch (error) {
        note.textContent = "backend not reachable (" + error.message + "); retrying";
        document.body.classList.add("offline");
      }
    }
    timer = setTimeout(refresh, every);
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  timer = setTimeout(refresh, every);
})();
