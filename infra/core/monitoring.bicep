// Log Analytics + workspace-based Application Insights. Local auth is off: ingestion needs an Entra ID token (the app
// sends one through APPLICATIONINSIGHTS_AUTHENTICATION_STRING and holds Monitoring Metrics Publisher).
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = applicationInsights.name
// Names the component and its ingestion endpoint; with local auth disabled it grants nothing on its own.
output connectionString string = applicationInsights.properties.ConnectionString
