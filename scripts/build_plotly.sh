#!/usr/bin/env bash
# Rebuilds kqvlib/static/plotly-heatmap.min.js: plotly.js's core (scatter, axes, menus, sliders) and its
# heatmap trace, nothing else, minified: 1.2 MB where the full plotly.js is 4.8 MB. Chapter 14's attention
# explorer embeds it in the page, so the explorer needs no network in the HTML book, Jupyter or Colab.
# This follows plotly.js's own recipe for custom bundles (CUSTOM_BUNDLE.md, esbuild with the plugins of
# its esbuild-config.js). Needs node (20 or later) and npm (the registry); writes the file and its facts beside it.
#   bash scripts/build_plotly.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PLOTLY=4.1.1 ESBUILD=0.28.1
out=kqvlib/static/plotly-heatmap.min.js
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null &&
 npm install --no-audit --no-fund --save-exact "plotly.js@$PLOTLY" "esbuild@$ESBUILD" \
   esbuild-plugin-inline-css@0.0.1 esbuild-plugin-environment@0.5.0 >/dev/null)
cat > "$work/entry.js" <<'JS'
var Plotly = require('plotly.js/lib/core');  // scatter, cartesian axes, updatemenus, sliders
Plotly.register([require('plotly.js/lib/heatmap')]);
module.exports = Plotly;
JS
cat > "$work/build.js" <<JS
require('esbuild').build({
  entryPoints: ['entry.js'], outfile: 'bundle.js', format: 'iife', globalName: 'Plotly', bundle: true,
  minify: true, target: 'es2016', legalComments: 'eof',
  plugins: [require('esbuild-plugin-inline-css')(),
            require('esbuild-plugin-environment').environmentPlugin({ NODE_DEBUG: false })],
  alias: { stream: 'stream-browserify' }, define: { global: 'window', 'define.amd': 'false' },
  banner: { js: '/* plotly.js v$PLOTLY (core + heatmap; scripts/build_plotly.sh) | (c) Plotly, Inc. | MIT license */' },
  footer: { js: 'window.Plotly = Plotly;' },
}).catch(() => process.exit(1));
JS
(cd "$work" && node build.js)
cp "$work/bundle.js" "$out"
python3 - "$out" "$PLOTLY" "$ESBUILD" <<'PY'
import hashlib, json, sys
from pathlib import Path
out, plotly, esbuild = sys.argv[1:]
data = Path(out).read_bytes()
facts = {"plotly.js": plotly, "traces": ["scatter", "heatmap"], "esbuild": esbuild, "bytes": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "license": "MIT (plotly.js); bundled licenses at the end"}
Path(out).with_suffix("").with_suffix(".json").write_text(json.dumps(facts, indent=1) + "\n")
print(json.dumps(facts))
PY
