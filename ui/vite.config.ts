// The web UI lives in ui/ and builds to ui/dist, which Tauri embeds
// (tauri.conf.json `frontendDist`); no dev server is involved.
import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

const ui = import.meta.dirname;

export default defineConfig({
  root: ui,
  // Relative asset URLs: the pages are served from tauri://localhost/.
  base: "./",
  build: {
    outDir: resolve(ui, "dist"),
    emptyOutDir: true,
    target: "es2021",
    rollupOptions: {
      input: {
        settings: resolve(ui, "index.html"),
        log: resolve(ui, "log.html"),
      },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
