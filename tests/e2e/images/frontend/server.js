'use strict';
// Stand-in for Tempo's Next.js standalone server (`node server.js`).
// Contract kept: listens on PORT / HOSTNAME, serves the app page at / and
// build assets under /_next/static/, and proxies /api/:path* to
// `${API_SERVICE_URL || 'http://api:5001'}/:path*` the way a Next.js external
// rewrite does (streamed bodies, headers passed through, Host rewritten to the
// target, X-Forwarded-Host set, other X-Forwarded-* only filled when absent,
// 30 s idle proxy timeout). Every response says `X-Powered-By: Next.js`.
// Note: real Next.js bakes rewrites at build time, so upstream images always
// proxy to http://api:5001 whatever API_SERVICE_URL says at run time.
// Per release (baked into /app/VERSION at build time): 2.10.0 and later add
// the route GET /health -> 200 {"status":"healthy"}; before, /health is a
// Next.js 404 page like any unknown path.

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const port = Number.parseInt(process.env.PORT || '3000', 10);
const hostname = process.env.HOSTNAME || '0.0.0.0';
const apiBase = new URL(process.env.API_SERVICE_URL || 'http://api:5001');
const PROXY_TIMEOUT_MS = 30000; // Next's default proxyTimeout for rewrites
const STATIC_DIR = path.join(__dirname, '.next', 'static');
const RELEASE = readRelease();
const HAS_HEALTH_ROUTE = atLeast(RELEASE, [2, 10, 0]);
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer'];

const PAGE = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Tempo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/_next/static/chunks/app.js" async=""></script></head>
<body><main id="tempo">Tempo</main>
<script>self.__next_f=self.__next_f||[];self.__next_f.push([0,"tempo"])</script>
</body></html>
`;

function readRelease() {
  let text = '';
  try {
    text = fs.readFileSync(path.join(__dirname, 'VERSION'), 'utf8');
  } catch {
    text = process.env.TEMPO_VERSION || '2.1.0';
  }
  return text.trim().split('-')[0].split('.').map((part) => Number.parseInt(part, 10) || 0);
}

function atLeast(version, floor) {
  for (let i = 0; i < floor.length; i += 1) {
    const have = version[i] || 0;
    if (have !== floor[i]) return have > floor[i];
  }
  return true;
}

function log(message) {
  process.stdout.write(`${message}\n`);
}

function send(res, status, body, type, extra = {}) {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'X-Powered-By': 'Next.js',
    ...extra,
  });
  res.end(body);
}

function proxy(req, res, rest, search) {
  const basePath = apiBase.pathname.replace(/\/+$/, '');
  const target = new URL(`${basePath}/${rest}${search}`, apiBase.origin);
  const headers = { ...req.headers };
  for (const name of HOP_BY_HOP) delete headers[name];
  headers['x-forwarded-host'] = req.headers.host || ''; // Next sets this on rewrites
  headers['x-forwarded-port'] ??= String(port);
  headers['x-forwarded-proto'] ??= 'http';
  headers['x-forwarded-for'] ??= req.socket.remoteAddress;
  headers.host = target.host; // changeOrigin

  const upstream = http.request(target, { method: req.method, headers }, (upRes) => {
    const out = { ...upRes.headers, 'x-powered-by': 'Next.js' };
    for (const name of HOP_BY_HOP.concat(['transfer-encoding'])) delete out[name];
    res.writeHead(upRes.statusCode, out);
    upRes.pipe(res);
  });
  upstream.setTimeout(PROXY_TIMEOUT_MS, () => upstream.destroy(new Error('proxy timeout')));
  upstream.on('error', (err) => {
    log(`Failed to proxy ${target.href} ${err.message}`);
    if (!res.headersSent) send(res, 500, 'Internal Server Error', 'text/plain; charset=utf-8');
    else res.destroy();
  });
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy(); // client went away
  });
  req.pipe(upstream);
}

function serveStatic(req, res, rel) {
  const file = path.join(STATIC_DIR, path.normalize(`/${rel}`));
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) return send(res, 404, 'Not Found', 'text/plain; charset=utf-8');
    const type = file.endsWith('.js') ? 'application/javascript; charset=UTF-8'
      : file.endsWith('.css') ? 'text/css; charset=UTF-8' : 'application/octet-stream';
    res.writeHead(200, {
      'Content-Type': type,
      'Content-Length': st.size,
      'Cache-Control': 'public, max-age=31536000, immutable',
      'X-Powered-By': 'Next.js',
    });
    if (req.method === 'HEAD') return res.end();
    fs.createReadStream(file).pipe(res);
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://placeholder');
  const pathname = url.pathname;
  if (pathname === '/api' || pathname.startsWith('/api/')) {
    return proxy(req, res, pathname.slice('/api/'.length), url.search);
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return send(res, 405, 'Method Not Allowed', 'text/plain; charset=utf-8', { Allow: 'GET, HEAD' });
  }
  if (HAS_HEALTH_ROUTE && pathname === '/health') {
    return send(res, 200, JSON.stringify({ status: 'healthy' }), 'application/json');
  }
  if (pathname.startsWith('/_next/static/')) {
    return serveStatic(req, res, pathname.slice('/_next/static/'.length));
  }
  if (pathname === '/') {
    return send(res, 200, PAGE, 'text/html; charset=utf-8', { Vary: 'RSC, Next-Router-State-Tree' });
  }
  return send(res, 404, '<!DOCTYPE html><title>404: This page could not be found.</title>',
    'text/html; charset=utf-8');
});

// Long uploads stream through: no whole-request timeout (Node 18 default is 5 min).
server.requestTimeout = 0;
server.listen(port, hostname, () => {
  log(`  ▲ Next.js (tempo e2e stand-in for Tempo ${RELEASE.join('.')})`);
  log(`  - Local:   http://${hostname}:${port}`);
  log(' ✓ Ready');
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 2000).unref(); // bounded drain of busy sockets
  });
}
