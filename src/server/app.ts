/**
 * The express application: routes, the web page, the OpenAPI document, metrics, and the one error
 * handler that turns every failure into `{"error": "..."}`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { PACKAGE_ROOT } from '../paths.js';
import { classifyRouter } from './classify-route.js';
import type { ServerContext } from './context.js';
import { HttpError, sendError, toHttpError } from './http-error.js';
import { kserveRouter } from './kserve.js';

/** The OpenAPI document of this API, in the repository. */
export const OPENAPI_PATH = join(PACKAGE_ROOT, 'docs', 'openapi.json');
/** The web page (read from the sources, so it also works from `dist/`). */
export const WEB_PAGE_PATH = join(PACKAGE_ROOT, 'src', 'server', 'web', 'index.html');

/** Paths answered while shutting down (probes must see "live, not ready"). */
const HEALTH = new Set(['/v2/health/live', '/v2/health/ready']);

/**
 * The methods the OpenAPI document declares for a request path (`{param}` segments match one path segment,
 * or the rest of a segment, as in `/v1/models/{name}:classify`), upper-case; none for an unknown path.
 */
export function allowedMethods(document: { paths?: Record<string, Record<string, unknown>> }): (path: string) => string[] {
  const routes = Object.entries(document.paths ?? {}).map(([template, operations]) => ({
    pattern: new RegExp(`^${template.split(/\{[^}]+\}/).map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')).join('[^/]+?')}$`),
    methods: Object.keys(operations).filter((m) => ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(m)).map((m) => m.toUpperCase()),
  }));
  return (path) => [...new Set(routes.filter((r) => r.pattern.test(path)).flatMap((r) => r.methods))];
}

export function createApp(ctx: ServerContext): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  const page = readFileSync(WEB_PAGE_PATH, 'utf8');
  const openapi = readFileSync(OPENAPI_PATH, 'utf8');

  app.use((req, res, next) => {
    res.locals.startedAt = performance.now();
    if (ctx.state.draining) {
      res.setHeader('Connection', 'close');
      if (!HEALTH.has(req.path)) {
        sendError(res, new HttpError(503, 'The server is shutting down and takes no new requests'));
        return;
      }
    }
    res.on('finish', () => {
      const level = res.statusCode >= 500 ? 'error' : 'debug';
      ctx.log[level]({ method: req.method, url: req.originalUrl, status: res.statusCode, ms: Math.round(performance.now() - res.locals.startedAt) }, 'request');
    });
    next();
  });

  app.get('/', (_req, res) => {
    res.type('html').send(page);
  });
  app.get('/openapi.json', (_req, res) => {
    res.type('json').send(openapi);
  });
  app.get('/metrics', async (_req, res) => {
    const { contentType, text } = await ctx.metrics.render();
    res.setHeader('Content-Type', contentType);
    res.send(text);
  });
  app.use(kserveRouter(ctx));
  app.use(classifyRouter(ctx));

  const allowed = allowedMethods(JSON.parse(openapi));
  app.use((req: Request, res: Response) => {
    const methods = allowed(req.path);
    if (methods.length > 0) {
      // RFC 9110 sec. 15.5.6: 405 for a known resource and another method, with the methods it allows.
      res.setHeader('Allow', methods.join(', '));
      throw new HttpError(405, `${req.method} is not allowed on ${req.path}; allowed: ${methods.join(', ')} (see /openapi.json)`);
    }
    throw new HttpError(404, `No endpoint ${req.method} ${req.path}; the API is described at /openapi.json`);
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    void _next;
    const http = toHttpError(err);
    if (http.status >= 500) ctx.log.error({ err, url: req.originalUrl }, http.message);
    else ctx.log.info({ url: req.originalUrl, status: http.status }, http.message);
    sendError(res, http);
  });
  return app;
}
