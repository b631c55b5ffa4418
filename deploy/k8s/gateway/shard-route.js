// The shard of the event stream that a request's org belongs to, so that the gateway
// sends each long-poll to the fanout shard set that consumes that shard.
//
// The org is read from the bearer token's payload, decoded here but NOT verified: the
// fanout verifies every token. A forged org only sends the request to a fanout that
// refuses the token (401), so routing on it shows nobody another org's events.
// It must compute what checkin_events.routing.shard_for does: orgId % SHARD_COUNT.

function orgOfAuthorization(header) {
    var match = /^Bearer\s+[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*$/.exec(
        header || ''
    );
    if (match === null) {
        return null;
    }
    var claims;
    try {
        claims = JSON.parse(Buffer.from(match[1], 'base64url').toString());
    } catch (e) {
        return null;
    }
    var org = claims === null ? undefined : claims.orgId;
    if (typeof org !== 'number' || !Number.isSafeInteger(org) || org < 1) {
        return null;
    }
    return org;
}

// js_set handler: "" when the request carries no readable org (the fanout then
// answers 401 wherever the request lands), else the shard number as text.
function shardOfRequest(r) {
    var count = parseInt(r.variables.shard_count, 10);
    var org = orgOfAuthorization(r.headersIn.Authorization);
    if (org === null || !(count > 0)) {
        return '';
    }
    return String(org % count);
}

export default { shardOfRequest, orgOfAuthorization };
