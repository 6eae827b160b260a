// Drives the official stripe npm package against the gateway; prints one JSON result line.
// Usage: node scenario.mjs '{"url": "http://127.0.0.1:PORT", "key": "...", "account": "acct_..."}'
import Stripe from "stripe";

const cfg = JSON.parse(process.argv[2]);
const url = new URL(cfg.url);

function client(key) {
  return new Stripe(key, {
    host: url.hostname,
    port: Number(url.port),
    protocol: url.protocol.replace(":", ""),
    stripeAccount: cfg.account,
    maxNetworkRetries: 0,
  });
}

function describe(err) {
  return {
    type: err.type,
    rawType: err.rawType,
    code: err.code,
    statusCode: err.statusCode,
    message: err.message,
    requestId: err.requestId,
    isPermissionError: err instanceof Stripe.errors.StripePermissionError,
    isAuthenticationError: err instanceof Stripe.errors.StripeAuthenticationError,
  };
}

async function attempt(fn) {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    return { ok: false, error: describe(err) };
  }
}

const stripe = client(cfg.key);
const out = {
  allowed: await attempt(async () => {
    const list = await stripe.customers.list({ limit: 3 });
    return { object: list.object, requestId: list.lastResponse.requestId };
  }),
  denied: await attempt(() => stripe.charges.list()),
  deniedExpand: await attempt(() =>
    stripe.customers.list({ expand: ["data.invoice_settings.default_payment_method"] })),
  badKey: await attempt(() => client("sk_test_" + "y".repeat(64)).customers.list()),
};
console.log(JSON.stringify(out));
