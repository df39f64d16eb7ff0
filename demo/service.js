/*
 * ngx_gateway demo service (njs 0.7 — only njs 0.7.x features are used).
 *
 * Every request is answered with JSON
 *   {"service":"users","instance":"users-1","port":40123,"uri":"/hello","method":"GET"}
 * and the headers X-Instance / X-Service.
 *
 * Fault injection through query arguments (they can be combined):
 *   delay=MS       wait MS milliseconds (0..30000) before answering
 *   fail=STATUS    answer with HTTP status STATUS (100..599) instead of 200
 *   fail_rate=R    with probability R (0..1) answer 503
 *
 * The instance identity comes from nginx variables set in service.conf:
 *   $demo_service, $demo_instance, $demo_port
 */

function intArg(v) {
    if (v === undefined || v === null || v === '') {
        return null;
    }
    if (!/^[0-9]+$/.test(String(v))) {
        return NaN;
    }
    return parseInt(v, 10);
}

function send(r, status, extra) {
    var body = {
        service: r.variables.demo_service,
        instance: r.variables.demo_instance,
        port: parseInt(r.variables.demo_port, 10),
        uri: r.uri,
        method: r.method
    };

    if (extra) {
        for (var k in extra) {
            body[k] = extra[k];
        }
    }

    r.headersOut['Content-Type'] = 'application/json';
    r.headersOut['X-Instance'] = r.variables.demo_instance;
    r.headersOut['X-Service'] = r.variables.demo_service;
    r.headersOut['Cache-Control'] = 'no-store';
    r.return(status, JSON.stringify(body) + '\n');
}

function answer(r, fail, failRate) {
    if (fail !== null) {
        send(r, fail, {error: 'injected failure (fail=' + fail + ')'});
        return;
    }

    if (failRate !== null && Math.random() < failRate) {
        send(r, 503, {error: 'injected random failure (fail_rate=' + failRate + ')'});
        return;
    }

    send(r, 200);
}

function handle(r) {
    var args = r.args || {};
    var delay = intArg(args.delay);
    var fail = intArg(args.fail);
    var failRate = null;

    if (delay !== null && (isNaN(delay) || delay > 30000)) {
        send(r, 400, {error: 'delay must be an integer 0..30000 (milliseconds)'});
        return;
    }

    if (fail !== null && (isNaN(fail) || fail < 100 || fail > 599)) {
        send(r, 400, {error: 'fail must be an HTTP status 100..599'});
        return;
    }

    if (args.fail_rate !== undefined && args.fail_rate !== '') {
        failRate = Number(args.fail_rate);
        if (isNaN(failRate) || failRate < 0 || failRate > 1) {
            send(r, 400, {error: 'fail_rate must be a number 0..1'});
            return;
        }
    }

    if (delay) {
        setTimeout(function () { answer(r, fail, failRate); }, delay);
        return;
    }

    answer(r, fail, failRate);
}

export default {handle};
