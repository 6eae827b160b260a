// The official stripe npm package's OAuth calls against the gateway; prints one JSON line.
// Usage: node oauth.mjs '{"url": "http://127.0.0.1:PORT", "key": "sk_test_...", "code": "ac_..."}'
import Stripe from "stripe";

const cfg = JSON.parse(process.argv[2]);
const url = new URL(cfg.url);
// `host` replaces every base address, the `connect` one of OAuth calls included.
const options = { host: url.hostname, port: Number(url.port),
                  protocol: url.protocol.replace(":", ""), maxNetworkRetries: 0 };

async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (err) {
    return { name: err.constructor.name, type: err.type, code: err.code };
  }
}

const app = new Stripe(cfg.key, options);
const first = await app.oauth.token({ grant_type: "authorization_code", code: cfg.code });
const asApp = new Stripe(first.access_token, options);
const customers = await asApp.customers.list();
const denied = await failure(asApp.charges.list());
const second = await app.oauth.token({ grant_type: "refresh_token",
                                       refresh_token: first.refresh_token });
const reused = await failure(app.oauth.token({ grant_type: "refresh_token",
                                              refresh_token: first.refresh_token }));
const afterReuse = await failure(new Stripe(second.access_token, options).customers.list());
console.log(JSON.stringify({
  stripe_user_id: first.stripe_user_id, scope: first.scope, livemode: first.livemode,
  access_prefix: first.access_token.slice(0, 8), customers: customers.object,
  denied, rotated: second.refresh_token !== first.refresh_token, reused, afterReuse,
}));
