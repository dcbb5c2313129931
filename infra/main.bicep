// mssp-hub: everything the app needs in one resource group.
// Deploy: az deployment group create -g <rg> -f infra/main.bicep -p infra/main.parameters.json
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(20)
@description('Short name of this deployment (e.g. prod); it seeds every resource name.')
param environmentName string

@description('Azure region; Flex Consumption must be available there.')
param location string = resourceGroup().location

@description('Application (client) id of the MSSP multi-tenant Entra ID app.')
param msspClientId string

@secure()
@description('The app\'s client secret; stored in Key Vault, referenced from app settings.')
param msspClientSecret string

@description('Optional: the triage app registration (Alert.ReadWrite.All) that triage invitations ask customers to trust; empty: every invitation is read-only.')
param msspTriageClientId string = ''

@secure()
@description('The triage app\'s client secret (with msspTriageClientId); stored in Key Vault.')
param msspTriageClientSecret string = ''

@description('Named automation keys for the triage API (MSSP_API_KEYS): name:sha256hex of the key, comma-separated; empty: no automation may act on alerts.')
param apiKeys string = ''

@secure()
@minLength(32)
@description('Secret that signs the consent state (32+ characters); stored in Key Vault.')
param onboardingStateKey string

@allowed([ 'public', 'usgov', 'usgovhigh' ])
param msspCloud string = 'public'

@description('The MSSP name customers see on the consent pages.')
param msspName string

@description('Where onboarding and revocation notices go.')
param opsEmail string = ''

@description('NCRONTAB schedule of the fan-out (seconds first).')
param fetchSchedule string = '0 */5 * * * *'

@allowed([ 'none', 'graph', 'smtp' ])
@description('How notification emails leave: Microsoft Graph sendMail (the app needs Mail.Send in this tenant), SMTP, or none (kept in MailOutbox only).')
param mailTransport string = 'none'

@description('Sender of notification emails (with graph: a mailbox in this tenant).')
param mailFrom string = ''

@description('SMTP server, port and login (with smtp; put the password in Key Vault as smtp-password and reference it as SMTP_PASSWORD).')
param smtpHost string = ''
param smtpPort string = '587'
param smtpUsername string = ''

@description('SIEM push outputs as a JSON list (see docs/siem.md). Put HEC tokens and webhook secrets in Key Vault and reference them as SIEM_HEC_TOKEN / SIEM_WEBHOOK_SECRET app settings.')
param siemOutputs string = '[]'

@description('Entra ID group object ids (comma-separated) whose members may open the portal.')
param portalAllowedGroups string = ''

@description('App role values (comma-separated) that may open the portal.')
param portalAllowedRoles string = ''

@description('Entra ID group object ids (comma-separated) whose members may act on alerts from the portal; empty, with portalActionRoles empty too: whoever may open the portal may act.')
param portalActionGroups string = ''

@description('App role values (comma-separated) that may act on alerts from the portal (others are read-only analysts).')
param portalActionRoles string = ''

@description('Client id of the Entra ID app that signs MSSP staff in to the portal (App Service Authentication); empty leaves authentication off and the portal refuses everyone.')
param portalLoginClientId string = ''

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName, application: 'mssp-hub' }
var functionAppName = '${abbrs.functionApp}mssphub-${resourceToken}'
var deploymentContainer = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

// the queues and tables the code uses (tests/unit/test_infra.py keeps them in step)
var queueNames = [
  'fetch-requests'
  'fetch-requests-poison'
  'alert-relay'
  'alert-relay-poison'
  'notify-events'
  'notify-events-poison'
  'siem-events'
  'siem-events-poison'
  'siem-deliveries'
  'siem-deliveries-poison'
  'bulk-triage'
  'bulk-triage-poison'
  'notify-channels'
  'notify-channels-poison'
  'correlate-events'
  'correlate-events-poison'
]
var tableNames = [
  'Tenants'
  'Alerts'
  'IngestState'
  'RunHistory'
  'PoisonLog'
  'AppHealth'
  'Invitations'
  'ConsentStates'
  'OpsNotices'
  'NotifyRules'
  'NotifyLedger'
  'MailOutbox'
  'NotifyDigest'
  'SiemFeed'
  'SiemDelivery'
  'FanoutLedger'
  'TenantSummaries'
  'AlertIndex'
  'BulkJobs'
  'CallBudget'
  'OwnChangeMarks'
  'AuditTrail'
  'NotifyChannels'
  'Incidents'
  'IncidentIndex'
  'Correlation'
  'CorrelationIndex'
]

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${abbrs.managedIdentity}mssphub-${resourceToken}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.logAnalytics}mssphub-${resourceToken}'
    appInsightsName: '${abbrs.appInsights}mssphub-${resourceToken}'
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: '${abbrs.storageAccount}${resourceToken}'
    deploymentContainer: deploymentContainer
    queueNames: queueNames
    tableNames: tableNames
  }
}

module vault 'app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    name: '${abbrs.keyVault}${resourceToken}'
    msspClientSecret: msspClientSecret
    msspTriageClientSecret: msspTriageClientSecret
    onboardingStateKey: onboardingStateKey
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: identity.properties.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: '${abbrs.servicePlan}mssphub-${resourceToken}'
    identityId: identity.id
    deploymentContainerUrl: '${storage.outputs.blobEndpoint}${deploymentContainer}'
    maximumInstanceCount: maximumInstanceCount
    appSettings: union({
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identity.properties.clientId
      AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
      AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
      AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
      APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
      MSSP_CLIENT_ID: msspClientId
      MSSP_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${vault.outputs.uri}secrets/mssp-client-secret/)'
      MSSP_CLOUD: msspCloud
      MSSP_NAME: msspName
      ONBOARDING_STATE_KEY: '@Microsoft.KeyVault(SecretUri=${vault.outputs.uri}secrets/onboarding-state-key/)'
      OPS_EMAIL: opsEmail
      FETCH_SCHEDULE: fetchSchedule
      DIGEST_SCHEDULE: '0 * * * * *'
      POISON_DRAIN_SCHEDULE: '0 */5 * * * *'
      MAIL_TRANSPORT: mailTransport
      MAIL_FROM: empty(mailFrom) ? 'mssp-hub@localhost.localdomain' : mailFrom
      MSSP_TENANT_ID: tenant().tenantId
      SMTP_HOST: smtpHost
      SMTP_PORT: smtpPort
      SMTP_USERNAME: smtpUsername
      SIEM_OUTPUTS: siemOutputs
      SIEM_PUSH_SCHEDULE: '*/15 * * * * *'
      PORTAL_ALLOWED_GROUPS: portalAllowedGroups
      PORTAL_ALLOWED_ROLES: portalAllowedRoles
      PORTAL_ACTION_GROUPS: portalActionGroups
      PORTAL_ACTION_ROLES: portalActionRoles
      MSSP_API_KEYS: apiKeys
    }, empty(msspTriageClientId) ? {} : {
      MSSP_TRIAGE_CLIENT_ID: msspTriageClientId
      MSSP_TRIAGE_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${vault.outputs.uri}secrets/mssp-triage-client-secret/)'
    })
    portalLoginClientId: portalLoginClientId
  }
  dependsOn: [ rbac ]
}

output FUNCTION_APP_NAME string = function.outputs.name
output FUNCTION_APP_URL string = 'https://${function.outputs.defaultHostName}'
output CONSENT_REDIRECT_URI string = 'https://${function.outputs.defaultHostName}/api/consent/callback'
output MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output KEY_VAULT_NAME string = vault.outputs.name
