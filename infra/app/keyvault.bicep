// Key Vault (RBAC mode) holding the apps' client secrets and the consent-state key.
param location string
param tags object
param name string
@secure()
param msspClientSecret string
@secure()
param msspTriageClientSecret string = ''
@secure()
param onboardingStateKey string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    enablePurgeProtection: true
  }
}

resource clientSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'mssp-client-secret'
  properties: { value: msspClientSecret }
}

resource triageSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(msspTriageClientSecret)) {
  parent: vault
  name: 'mssp-triage-client-secret'
  properties: { value: msspTriageClientSecret }
}

resource stateKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'onboarding-state-key'
  properties: { value: onboardingStateKey }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
