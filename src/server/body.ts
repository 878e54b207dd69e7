/**
 * Request bodies: whole bodies (images, KServe requests) with express's raw parser, and
 * `multipart/form-data` uploads streamed through busboy. Both stop at the body limit (413).
 */
import busboy from 'busboy';
import express, { type Request, type Response } from 'express';
import { formatMb, HttpError } from './http-error.js';

/**
 * Reads the whole body (gzip/deflate/br bodies are inflated).
 *
 * @param limitBytes - largest body accepted.
 * @returns the body; empty when there is none.
 * @throws body-parser errors (`entity.too.large` -> 413, `request.aborted` -> 400; see `toHttpError`).
 */
export function readBody(req: Request, res: Response, limitBytes: number): Promise<Buffer> {
  const parse = express.raw({ type: () => true, limit: limitBytes });
  return new Promise<Buffer>((resolve, reject) => {
    parse(req, res, (err?: unknown) => {
      if (err) reject(err);
      else resolve(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
    });
  });
}

/** One uploaded file. */
export interface UploadedFile {
  /** Form field name. */
  field: string;
  /** File name as sent by the client (may be empty). */
  filename: string;
  /** Declared type; content decides the real format. */
  mimeType: string;
  bytes: Buffer;
}

/**
 * Reads the files of a `multipart/form-data` body (other fields are ignored).
 *
 * @param limits - `maxBytes` for all files together, `maxFiles` per request.
 * @returns the files in body order (at least one).
 * @throws HttpError 400 for a malformed or truncated body (no boundary, cut-off part, missing final
 *   boundary) or no file; 413 for too many or too large files. The rest of a refused body is read
 *   and dropped, and the connection is closed after the answer.
 */
export function readMultipart(req: Request, limits: { maxBytes: number; maxFiles: number }): Promise<UploadedFile[]> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBytes) {
    return Promise.reject(tooLarge(`Expected a request body of at most ${formatMb(limits.maxBytes)} (--body-limit-mb) but received ${formatMb(declared)}`));
  }
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: req.headers, limits: { fileSize: limits.maxBytes, files: limits.maxFiles, fields: 100, parts: limits.maxFiles + 100 } });
  } catch (err) {
    return Promise.reject(new HttpError(400, `Malformed multipart/form-data request: ${(err as Error).message}`));
  }
  return new Promise<UploadedFile[]>((resolve, reject) => {
    const files: UploadedFile[] = [];
    let total = 0;
    let settled = false;
    const fail = (err: HttpError): void => {
      if (settled) return;
      settled = true;
      req.unpipe(parser);
      req.resume(); // drop the rest of the body
      parser.removeAllListeners();
      parser.on('error', () => undefined);
      reject(err);
    };
    parser.on('file', (field, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > limits.maxBytes) {
          fail(tooLarge(`Expected files of at most ${formatMb(limits.maxBytes)} together (--body-limit-mb) but received more (at file ${JSON.stringify(info.filename ?? '')})`));
          stream.resume();
          return;
        }
        chunks.push(chunk);
      });
      stream.on('error', (err: Error) => fail(new HttpError(400, `Malformed multipart/form-data body in file ${JSON.stringify(info.filename ?? '')}: ${err.message}`)));
      stream.on('limit', () => fail(tooLarge(`Expected a file of at most ${formatMb(limits.maxBytes)} (--body-limit-mb) but ${JSON.stringify(info.filename ?? '')} is larger`)));
      stream.on('end', () => {
        if (!settled) files.push({ field, filename: info.filename ?? '', mimeType: info.mimeType, bytes: Buffer.concat(chunks) });
      });
    });
    parser.on('filesLimit', () => fail(tooLarge(`Expected at most ${limits.maxFiles} files per request but received more`)));
    parser.on('error', (err: Error) => fail(new HttpError(400, `Malformed multipart/form-data body: ${err.message}`)));
    parser.on('close', () => {
      if (settled) return;
      settled = true;
      if (files.length === 0) reject(new HttpError(400, 'Expected at least one file part (Content-Disposition with filename) in the multipart/form-data body but received none'));
      else resolve(files);
    });
    req.on('aborted', () => fail(new HttpError(400, 'The request body was cut off: the client stopped sending')));
    req.pipe(parser);
  });
}

function tooLarge(message: string): HttpError {
  return new HttpError(413, message, { Connection: 'close' });
}
