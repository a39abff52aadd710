() => {
  // Arrow keys step through the results while a photo's detail is open; Escape closes it.
  document.addEventListener("keydown", (e) => {
    const tag = (e.target && e.target.tagName) || "";
    if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || e.altKey || e.ctrlKey || e.metaKey) return;
    const detail = [...document.querySelectorAll(".detail")].find((d) => d.offsetParent !== null);
    if (!detail) return;
    if (e.key === "Escape") {
      const close = detail.querySelector(".close-detail");
      if (close) { close.click(); e.preventDefault(); }
      return;
    }
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    // the results grid this detail belongs to: the last one before it on the page
    const grids = [...document.querySelectorAll(".results")].filter(
      (g) => g.compareDocumentPosition(detail) & Node.DOCUMENT_POSITION_FOLLOWING);
    const grid = grids[grids.length - 1];
    const tiles = grid ? [...grid.querySelectorAll(".thumbnail-item")] : [];
    const at = tiles.findIndex((t) => t.classList.contains("selected"));
    const next = at + (e.key === "ArrowRight" ? 1 : -1);
    if (at >= 0 && next >= 0 && next < tiles.length) { tiles[next].click(); e.preventDefault(); }
  }, true);
}
