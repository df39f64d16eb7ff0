-- wrk script (ngx_gateway bench): after the run, print machine-readable
-- lines "BENCH key value": requests, duration, req/s, every error counter
-- and the latency distribution (microseconds) at many percentiles, so that
-- bench/run can tabulate and plot it without parsing wrk's text.

local pcts = { 1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5,
               99, 99.5, 99.9, 99.99, 100 }

done = function(summary, latency, requests)
    local out = {}
    local function put(k, v) out[#out + 1] = string.format("BENCH %s %s", k, v) end

    put("requests", summary.requests)
    put("duration_us", summary.duration)
    put("rps", string.format("%.1f", summary.requests / (summary.duration / 1e6)))
    put("err_connect", summary.errors.connect)
    put("err_read", summary.errors.read)
    put("err_write", summary.errors.write)
    put("err_status", summary.errors.status)
    put("err_timeout", summary.errors.timeout)
    put("lat_mean_us", string.format("%.1f", latency.mean))
    put("lat_max_us", latency.max)
    for _, p in ipairs(pcts) do
        put("lat_p" .. p, latency:percentile(p))
    end
    io.write(table.concat(out, "\n"), "\n")
end
