// Package cwclient makes the CloudWatch clients redblack uses: the router's
// bridge of an ALB's metrics and the analysis templates' cloudwatch
// provider.
package cwclient

import (
	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
)

// QueryProtocol makes a client speak CloudWatch's awsQuery protocol rather
// than the SDK's default RPC v2 CBOR: AWS accepts both; moto (5.2) only the
// query protocol. Use it as a client option: cw.NewFromConfig(c, QueryProtocol).
func QueryProtocol(o *cw.Options) {
	o.Protocol = awsquery.New(schemas.GraniteServiceVersion20100801)
}

// New is a CloudWatch client of an AWS configuration, speaking the query
// protocol.
func New(c sdkaws.Config) *cw.Client { return cw.NewFromConfig(c, QueryProtocol) }
