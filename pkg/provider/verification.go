package provider

// Verification is what a check of a configuration's credentials found (ingest's
// VerifyProvider); the check sends nothing.
type Verification struct {
	OK bool
	// Detail says what was checked and found, or what failed; never a secret.
	Detail string
	// Healthy is what the configuration's health becomes: true after a good
	// login, false after refused credentials (or a suspended account), nil
	// when the check says nothing about the credentials (network trouble).
	Healthy *bool
	// Quota is the provider account's sending quota and status, where the
	// provider reports one (SES GetAccount).
	Quota *Quota
}

// Quota is a provider account's sending quota and status.
type Quota struct {
	Max24HourSend    float64
	MaxSendRate      float64
	SentLast24Hours  float64
	ProductionAccess bool
	SendingEnabled   bool
}

// Healthy and Unhealthy are the values of Verification.Healthy.
func Healthy() *bool   { t := true; return &t }
func Unhealthy() *bool { f := false; return &f }
