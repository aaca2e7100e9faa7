-- Tenant check: /api/orders/{tenant}/... is only for callers whose verified token carries that
-- tenant (claim `tenant`), or the `admin` role. Everyone else gets a 403 problem+json and the
-- backend sees nothing. Needs `auth = {...}` on the route so `ctx.claims` is set.

function on_request(req, ctx)
  local tenant = string.match(req.path, "^/api/orders/([%w%-_]+)")
  if not tenant then
    return nil
  end
  local claims = ctx.claims
  if claims == nil then
    return { status = 401, body = "This route needs a token." }
  end
  if claims.tenant ~= tenant and claims.role ~= "admin" then
    log.warn("tenant mismatch: " .. tostring(claims.sub) .. " asked for " .. tenant)
    return { status = 403, body = "This token may not read tenant " .. tenant .. "." }
  end
  ctx.vars.tenant = tenant
  req:set_header("x-tenant", tenant)
end

function on_response(resp, ctx)
  if ctx.vars.tenant then
    resp:set_header("x-tenant", ctx.vars.tenant)
  end
end
