// Package shared is the only code the redblack services share: event types,
// subjects, stream and bucket definitions, NATS helpers, logging and the test
// kit. It owns no behaviour of any service.
package shared
