'use strict';
// A test OTLP/HTTP trace receiver for t/50-tracing.t.
//
//   node collector.js PORT_FILE [PORT]
//
// Listens on 127.0.0.1 (a free port, written to PORT_FILE) and decodes
// every POST /v1/traces with OpenTelemetry's own protobufjs root from
// @opentelemetry/otlp-transformer: protobuf bodies with
// ExportTraceServiceRequest.decode, JSON bodies (ids in hex, 64-bit
// integers as strings) by converting them to the protobuf JSON mapping,
// verify, and a round trip through encode/decode that must keep every key
// (verify alone ignores unknown ones).  A batch that does not decode is
// answered 400 and kept as an error.
//
//   GET  /batches   what was received: [{protocol, resource, spans, conn}]
//                   and {errors: [...]}
//   GET  /stats     {requests, connections}: exports, and the connections
//                   they came on

const http = require('http');
const fs = require('fs');
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root');
const Long = require('protobufjs/minimal').util.Long;

const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const Res = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;

const batches = [];
const errors = [];
let requests = 0;
let connections = 0;
const exporting = new Set();    // connections that carried an export

const ID_KEYS = new Set(['traceId', 'spanId', 'parentSpanId']);
const LONG_KEYS = new Set(['startTimeUnixNano', 'endTimeUnixNano',
                           'timeUnixNano', 'intValue']);

function hexToBase64(hex, key) {
    if (typeof hex !== 'string' || !/^([0-9a-f]{2})*$/.test(hex)) {
        throw new Error(`${key}: not lowercase hex: ${JSON.stringify(hex)}`);
    }
    return Buffer.from(hex, 'hex').toString('base64');
}

// OTLP/JSON to the protobuf JSON mapping protobufjs reads
function fromOtlpJson(v, key) {
    if (Array.isArray(v)) {
        return v.map((x) => fromOtlpJson(x, key));
    }
    if (v !== null && typeof v === 'object') {
        const o = {};
        for (const [k, x] of Object.entries(v)) {
            if (ID_KEYS.has(k)) {
                o[k] = hexToBase64(x, k);
            } else if (LONG_KEYS.has(k)) {
                if (typeof x !== 'string' || !/^-?[0-9]+$/.test(x)) {
                    throw new Error(`${k}: not a decimal string: ${JSON.stringify(x)}`);
                }
                o[k] = Long.fromString(x, k !== 'intValue');
            } else {
                o[k] = fromOtlpJson(x, k);
            }
        }
        return o;
    }
    return v;
}

// every key of a must be in b (b: after the round trip)
function missingKeys(a, b, path, out) {
    if (Long.isLong(a)) {
        if (b === undefined || String(b) !== a.toString()) {
            out.push(path);
        }
        return out;
    }
    if (a !== null && typeof a === 'object') {
        if (b === null || typeof b !== 'object') {
            out.push(path);
            return out;
        }
        for (const k of Object.keys(a)) {
            if (!(k in b)) {
                out.push(`${path}.${k}`);
            } else {
                missingKeys(a[k], b[k], `${path}.${k}`, out);
            }
        }
    }
    return out;
}

const OBJ = { longs: String, enums: Number, bytes: String, defaults: false };

function decode(type, body) {
    let msg;
    if (/protobuf/.test(type)) {
        msg = Req.decode(body);
        const err = Req.verify(msg);
        if (err) {
            throw new Error(`verify: ${err}`);
        }
        return { protocol: 'protobuf', obj: Req.toObject(msg, OBJ) };
    }
    if (/json/.test(type)) {
        const raw = JSON.parse(body.toString('utf8'));
        const obj = fromOtlpJson(raw, '');
        const err = Req.verify(obj);
        if (err) {
            throw new Error(`verify: ${err}`);
        }
        msg = Req.fromObject(obj);
        const back = Req.toObject(Req.decode(Req.encode(msg).finish()), OBJ);
        const lost = missingKeys(obj, back, '', []);
        if (lost.length) {
            throw new Error(`keys not in OTLP: ${lost.join(', ')}`);
        }
        return { protocol: 'json', obj: back };
    }
    throw new Error(`content type ${type}`);
}

function b64hex(s) {
    return s ? Buffer.from(s, 'base64').toString('hex') : '';
}

function attrs(list) {
    const o = {};
    for (const kv of list || []) {
        const v = kv.value || {};
        if ('stringValue' in v) {
            o[kv.key] = v.stringValue;
        } else if ('intValue' in v) {
            o[kv.key] = Number(v.intValue);
        } else if ('boolValue' in v) {
            o[kv.key] = v.boolValue;
        } else {
            o[kv.key] = null;
        }
    }
    return o;
}

function flatten(obj, protocol, conn) {
    const out = [];
    for (const rs of obj.resourceSpans || []) {
        const resource = attrs((rs.resource || {}).attributes);
        const spans = [];
        for (const ss of rs.scopeSpans || []) {
            for (const s of ss.spans || []) {
                const tid = b64hex(s.traceId);
                const sid = b64hex(s.spanId);
                if (tid.length !== 32 || sid.length !== 16) {
                    throw new Error(`span ids of ${tid.length / 2} and ${sid.length / 2} bytes`);
                }
                spans.push({
                    traceId: tid,
                    spanId: sid,
                    parentSpanId: b64hex(s.parentSpanId),
                    traceState: s.traceState || '',
                    flags: s.flags || 0,
                    name: s.name,
                    kind: s.kind,
                    start: s.startTimeUnixNano,
                    end: s.endTimeUnixNano,
                    attributes: attrs(s.attributes),
                    status: (s.status || {}).code || 0,
                    scope: (ss.scope || {}).name || '',
                });
            }
        }
        out.push({ protocol, conn, resource, spans });
    }
    return out;
}

const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        if (req.method === 'GET' && req.url === '/batches') {
            res.setHeader('Content-Type', 'application/json');
            res.end(JSON.stringify({ batches, errors }));
            return;
        }
        if (req.method === 'GET' && req.url === '/stats') {
            res.setHeader('Content-Type', 'application/json');
            res.end(JSON.stringify({ requests, connections: exporting.size }));
            return;
        }
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
            res.statusCode = 404;
            res.end();
            return;
        }
        requests++;
        exporting.add(req.socket.connId);
        const type = req.headers['content-type'] || '';
        try {
            const d = decode(type, Buffer.concat(chunks));
            for (const b of flatten(d.obj, d.protocol, req.socket.connId)) {
                batches.push(b);
            }
        } catch (e) {
            errors.push(String(e.message || e));
            res.statusCode = 400;
            res.end(String(e.message || e));
            return;
        }
        if (/json/.test(type)) {
            res.setHeader('Content-Type', 'application/json');
            res.end('{}');
        } else {
            res.setHeader('Content-Type', 'application/x-protobuf');
            res.end(Buffer.from(Res.encode(Res.create({})).finish()));
        }
    });
});

server.on('connection', (sock) => {
    sock.connId = ++connections;
});

server.keepAliveTimeout = 60000;

server.listen(Number(process.argv[3] || 0), '127.0.0.1', () => {
    const file = process.argv[2];
    fs.writeFileSync(`${file}.tmp`, String(server.address().port));
    fs.renameSync(`${file}.tmp`, file);
});
