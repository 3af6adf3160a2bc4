package cli

import (
	"context"
	"strings"
	"testing"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/redblack/redblack/shared/testkit/moto"
)

// TestVolumeOnAWS: `redblack volume ls|destroy --provider aws` lists a
// service's EBS slot volumes (moto's, through AWS_ENDPOINT_URL) and
// deletes them only with --confirm, leaving other services' volumes.
func TestVolumeOnAWS(t *testing.T) {
	srv := moto.Start(t)
	motoEnv(t, srv)
	e2 := ec2.NewFromConfig(srv.Config(t))
	for _, v := range []struct{ service, slot string }{{"store", "store-0"}, {"store", "store-1"}, {"other", "other-0"}} {
		if _, err := e2.CreateVolume(context.Background(), &ec2.CreateVolumeInput{AvailabilityZone: sdkaws.String("us-east-1a"), Size: sdkaws.Int32(10),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeVolume, Tags: []ec2types.Tag{
				{Key: sdkaws.String("redblack:service"), Value: sdkaws.String(v.service)}, {Key: sdkaws.String("redblack:slot"), Value: sdkaws.String(v.slot)}}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := run(t, "", "volume", "ls", "store", "--provider", "aws")
	if code != 0 || !strings.Contains(out, "store-0") || !strings.Contains(out, "store-1") || strings.Contains(out, "other-0") || !strings.Contains(out, "available") {
		t.Fatalf("ls: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(t, "", "volume", "destroy", "store", "--provider", "aws"); code == 0 || !strings.Contains(errs, "--confirm store") {
		t.Fatalf("destroy without --confirm: %d %q", code, errs)
	}
	if code, out, errs := run(t, "", "volume", "destroy", "store", "--provider", "aws", "--confirm", "store"); code != 0 || strings.Count(out, "destroyed") != 2 {
		t.Fatalf("destroy: %d %q %q", code, out, errs)
	}
	if _, out, _ := run(t, "", "volume", "ls", "store", "--provider", "aws"); !strings.Contains(out, "store has no EBS volume") {
		t.Fatalf("ls after destroy: %q", out)
	}
	if _, out, _ := run(t, "", "volume", "ls", "other", "--provider", "aws"); !strings.Contains(out, "other-0") {
		t.Fatalf("other's volume went too: %q", out)
	}
}

// motoEnv points the standard AWS configuration (AWS_ENDPOINT_URL, test
// credentials, us-east-1) at srv for the test.
func motoEnv(t *testing.T, srv *moto.Server) {
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
}
