import { resolve } from "node:path";
import { defineConfig } from "vite";

// Two pages: the dispatcher map (/) and the citizen report page (/report). The bundle is
// built into api/static/dist, which `cityfix api` serves; nothing is loaded from a CDN.
export default defineConfig({
  base: "/",
  build: {
    outDir: resolve(__dirname, "../static/dist"),
    emptyOutDir: true,
    assetsDir: "assets",
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      input: {
        index: resolve(__dirname, "index.html"),
        report: resolve(__dirname, "report.html"),
      },
    },
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8000", ws: true },
      "/open311": "http://127.0.0.1:8000",
      "/tiles": "http://127.0.0.1:8000",
      "/report/submit": "http://127.0.0.1:8000",
      "/report/geocode": "http://127.0.0.1:8000",
    },
  },
});
