-- Header normalisation: one spelling of the tenant header, no client debug switches upstream,
-- and a trace of which route the gateway picked.
--
--   [scripts.headers]
--   file = "scripts/headers.lua"
--   [[routes]] ... scripts = ["headers"]

local DROP = { "x-debug", "x-internal-token" }

function on_request(req, ctx)
  local tenant = req:header("x-tenant") or req:header("x-tenant-id")
  if tenant then
    req:remove_header("x-tenant-id")
    req:set_header("x-tenant", string.lower(tenant))
  end
  for _, name in DROP do
    req:remove_header(name)
  end
  req:set_header("x-portico-route", ctx.route)
end
