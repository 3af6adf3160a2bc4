// Package alb moves traffic at Amazon's load balancer: each server group
// has an ELBv2 target group of the same name, and a service's weights are
// one weighted forward action on its listener (or listener rule), with
// weights 0–999. After setting them it reads them back and compares before
// anyone announces the change, as Argo Rollouts does. A target group with
// weight is never deleted.
package alb

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// MaxWeight is the ALB's largest target group weight.
const MaxWeight = 999

// Edge sets weights on one listener or listener rule per service.
type Edge struct {
	client *elb.Client
	// Listeners maps a service to its listener ARN or listener rule ARN
	// (an ARN with ":listener-rule/" is a rule).
	Listeners map[string]string
	// DeregistrationDelay of the target groups it creates (default 30 s).
	DeregistrationDelay time.Duration
	// VPC and Port of the target groups it creates.
	VPC  string
	Port int
}

// New builds the edge on an ELBv2 client.
func New(client *elb.Client, vpc string, port int, listeners map[string]string) *Edge {
	return &Edge{client: client, Listeners: listeners, VPC: vpc, Port: port, DeregistrationDelay: 30 * time.Second}
}

// Scale converts the routes' weights (0–1000) to the ALB's (0–999),
// keeping a group with any weight above 0.
func Scale(w int) int32 {
	if w <= 0 {
		return 0
	}
	return int32(max(1, w*MaxWeight/1000))
}

// TargetGroup returns the ARN of the group's target group, creating it (HTTP,
// instance targets, the deregistration delay set) if there is none.
func (e *Edge) TargetGroup(ctx context.Context, group string) (string, error) {
	arn, err := e.existing(ctx, group)
	if err != nil || arn != "" {
		return arn, err
	}
	created, err := e.client.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name: sdkaws.String(group), Protocol: elbtypes.ProtocolEnumHttp, Port: sdkaws.Int32(int32(e.Port)),
		VpcId: sdkaws.String(e.VPC), TargetType: elbtypes.TargetTypeEnumInstance,
	})
	if err != nil {
		return "", fmt.Errorf("alb: create target group %s: %w", group, err)
	}
	arn = sdkaws.ToString(created.TargetGroups[0].TargetGroupArn)
	_, err = e.client.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{
		TargetGroupArn: sdkaws.String(arn),
		Attributes: []elbtypes.TargetGroupAttribute{{Key: sdkaws.String("deregistration_delay.timeout_seconds"),
			Value: sdkaws.String(strconv.Itoa(int(e.DeregistrationDelay.Seconds())))}},
	})
	if err != nil {
		return "", fmt.Errorf("alb: deregistration delay of %s: %w", group, err)
	}
	return arn, nil
}

// existing returns the ARN of the group's target group, "" if there is none.
func (e *Edge) existing(ctx context.Context, group string) (string, error) {
	out, err := e.client.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{group}})
	if err == nil && len(out.TargetGroups) > 0 {
		return sdkaws.ToString(out.TargetGroups[0].TargetGroupArn), nil
	}
	if err != nil && !strings.Contains(err.Error(), "TargetGroupNotFound") {
		return "", fmt.Errorf("alb: describe target group %s: %w", group, err)
	}
	return "", nil
}

// Apply sets the service's weights (by group, 0–1000 as in the routes
// bucket; a group at 0 without a target group, a destroyed one, is left out)
// as one weighted forward action, then reads them back; it returns
// an error unless the listener holds exactly what was set.
func (e *Edge) Apply(ctx context.Context, service string, weights map[string]int) error {
	target, ok := e.Listeners[service]
	if !ok {
		return fmt.Errorf("alb: no listener configured for %s", service)
	}
	want := map[string]int32{}
	var tgs []elbtypes.TargetGroupTuple
	groups := make([]string, 0, len(weights))
	for g := range weights {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		arn, err := e.TargetGroup(ctx, g)
		if weights[g] == 0 { // a destroyed group keeps weight 0 in the routes: no target group for it
			arn, err = e.existing(ctx, g)
		}
		if err != nil {
			return err
		}
		if arn == "" {
			continue
		}
		want[arn] = Scale(weights[g])
		tgs = append(tgs, elbtypes.TargetGroupTuple{TargetGroupArn: sdkaws.String(arn), Weight: sdkaws.Int32(want[arn])})
	}
	actions := []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, ForwardConfig: &elbtypes.ForwardActionConfig{TargetGroups: tgs}}}
	var err error
	if isRule(target) {
		_, err = e.client.ModifyRule(ctx, &elb.ModifyRuleInput{RuleArn: sdkaws.String(target), Actions: actions})
	} else {
		_, err = e.client.ModifyListener(ctx, &elb.ModifyListenerInput{ListenerArn: sdkaws.String(target), DefaultActions: actions})
	}
	if err != nil {
		return fmt.Errorf("alb: set weights of %s: %w", service, err)
	}
	got, err := e.Weights(ctx, service)
	if err != nil {
		return err
	}
	for arn, w := range want {
		if got[arn] != w {
			return fmt.Errorf("alb: %s reads back weight %d for %s, not %d", service, got[arn], arn, w)
		}
	}
	return nil
}

func isRule(arn string) bool { return strings.Contains(arn, ":listener-rule/") }

// Weights reads the service's forward weights by target group ARN.
func (e *Edge) Weights(ctx context.Context, service string) (map[string]int32, error) {
	target := e.Listeners[service]
	var actions []elbtypes.Action
	if isRule(target) {
		out, err := e.client.DescribeRules(ctx, &elb.DescribeRulesInput{RuleArns: []string{target}})
		if err != nil || len(out.Rules) == 0 {
			return nil, fmt.Errorf("alb: read rule of %s: %v", service, err)
		}
		actions = out.Rules[0].Actions
	} else {
		listeners, err := e.client.DescribeListeners(ctx, &elb.DescribeListenersInput{ListenerArns: []string{target}})
		if err != nil || len(listeners.Listeners) == 0 {
			return nil, fmt.Errorf("alb: read listener of %s: %v", service, err)
		}
		actions = listeners.Listeners[0].DefaultActions
	}
	got := map[string]int32{}
	for _, a := range actions {
		if a.ForwardConfig != nil {
			for _, tg := range a.ForwardConfig.TargetGroups {
				got[sdkaws.ToString(tg.TargetGroupArn)] = sdkaws.ToInt32(tg.Weight)
			}
		} else if a.TargetGroupArn != nil {
			got[sdkaws.ToString(a.TargetGroupArn)] = MaxWeight
		}
	}
	return got, nil
}

// ErrHasWeight: the target group still takes traffic.
var ErrHasWeight = errors.New("target group has weight")

// DeleteTargetGroup deletes the group's target group unless it has weight
// on the service's listener (the traffic guard).
func (e *Edge) DeleteTargetGroup(ctx context.Context, service, group string) error {
	arn, err := e.existing(ctx, group)
	if err != nil || arn == "" {
		return err // an error to try again on, or none
	}
	if _, ok := e.Listeners[service]; ok {
		got, err := e.Weights(ctx, service)
		if err != nil {
			return err
		}
		if got[arn] > 0 {
			return fmt.Errorf("alb: refused to delete %s: %w %d", group, ErrHasWeight, got[arn])
		}
		// a weight-0 entry still references it: drop it from the action
		if _, listed := got[arn]; listed {
			if err := e.removeFromAction(ctx, service, arn); err != nil {
				return err
			}
		}
	}
	if _, err := e.client.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: sdkaws.String(arn)}); err != nil {
		return fmt.Errorf("alb: delete target group %s: %w", group, err)
	}
	return nil
}

// removeFromAction rewrites the service's forward action without arn.
func (e *Edge) removeFromAction(ctx context.Context, service, arn string) error {
	got, err := e.Weights(ctx, service)
	if err != nil {
		return err
	}
	var tgs []elbtypes.TargetGroupTuple
	for a, w := range got {
		if a != arn {
			tgs = append(tgs, elbtypes.TargetGroupTuple{TargetGroupArn: sdkaws.String(a), Weight: sdkaws.Int32(w)})
		}
	}
	if len(tgs) == 0 {
		return nil
	}
	sort.Slice(tgs, func(i, j int) bool { return *tgs[i].TargetGroupArn < *tgs[j].TargetGroupArn })
	actions := []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, ForwardConfig: &elbtypes.ForwardActionConfig{TargetGroups: tgs}}}
	target := e.Listeners[service]
	if isRule(target) {
		_, err = e.client.ModifyRule(ctx, &elb.ModifyRuleInput{RuleArn: sdkaws.String(target), Actions: actions})
	} else {
		_, err = e.client.ModifyListener(ctx, &elb.ModifyListenerInput{ListenerArn: sdkaws.String(target), DefaultActions: actions})
	}
	return err
}

// Dimension is CloudWatch's TargetGroup dimension of a target group ARN:
// "targetgroup/<name>/<id>".
func Dimension(arn string) string {
	if i := strings.Index(arn, "targetgroup/"); i >= 0 {
		return arn[i:]
	}
	return arn
}

// ErrNoTargetGroup: the group has no target group (not made yet, or
// released with the group).
var ErrNoTargetGroup = errors.New("no target group")

// TargetGroupDimension gives a group's TargetGroup dimension for CloudWatch.
// It never makes a target group: one is made with its group and released
// with it, and a look-up that made one for a group just destroyed (whose
// samples the router still reads for a moment) would leave it behind. A
// group without one is ErrNoTargetGroup.
func (e *Edge) TargetGroupDimension(ctx context.Context, group string) (string, error) {
	arn, err := e.existing(ctx, group)
	if err == nil && arn == "" {
		err = fmt.Errorf("alb: %s: %w", group, ErrNoTargetGroup)
	}
	return Dimension(arn), err
}

// GroupWeights is Weights keyed by server group (the target groups' names)
// instead of target group ARN.
func (e *Edge) GroupWeights(ctx context.Context, service string) (map[string]int32, error) {
	got, err := e.Weights(ctx, service)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int32, len(got))
	for arn, w := range got {
		// targetgroup/<name>/<id>
		if parts := strings.Split(Dimension(arn), "/"); len(parts) >= 2 {
			out[parts[1]] = w
		}
	}
	return out, nil
}
