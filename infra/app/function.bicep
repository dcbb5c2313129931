// A Flex Consumption Function App on Python 3.11, running as the user-assigned identity.
param location string
param tags object
param name string
param planName string
param identityId string
param deploymentContainerUrl string
param maximumInstanceCount int
@description('App settings; PUBLIC_BASE_URL is added from the app\'s own host name.')
param appSettings object
@description('Entra ID app that signs MSSP staff in to the portal; empty: no App Service Authentication.')
param portalLoginClientId string = ''

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// a child resource, so the settings can name the app's own host (no cycle)
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: union(appSettings, {
    PUBLIC_BASE_URL: 'https://${app.properties.defaultHostName}'
  })
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName

// App Service Authentication in front of the portal: it signs staff in with Entra ID and
// passes X-MS-CLIENT-PRINCIPAL (stripping any a client sends). Anonymous requests still
// reach the app: the consent pages and the function-key API must work without sign-in.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(portalLoginClientId)) {
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: true }
    globalValidation: { requireAuthentication: false, unauthenticatedClientAction: 'AllowAnonymous' }
    httpSettings: { requireHttps: true }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: portalLoginClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: { allowedAudiences: [ 'api://${portalLoginClientId}', portalLoginClientId ] }
      }
    }
    login: { tokenStore: { enabled: false } }
  }
}
